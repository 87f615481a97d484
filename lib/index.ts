// roformer-v2: train RoFormerV2 language models from TypeScript on libtorch.
//
// Importing this module never loads the native addon; the first call that needs
// libtorch does (bindings/load.ts), and explains any failure.

export { tensor, tensorFromBytes, isTensor } from './tensor.js';
export type { Device, DType, Tensor, TensorArray, NestedNumbers } from './tensor.js';
export { RoFormerV2, RobertaBaseline } from './model.js';
export type { CreateOptions, ForwardOptions } from './model.js';
export { RotaryEmbedding, RMSNorm, SelfAttention, EncoderBlock } from './layers.js';
export type { SelfAttentionOptions, EncoderBlockOptions } from './layers.js';
export { MODEL_SIZES, ConfigError, resolveConfig, validateConfig, interpolationFactor } from './config.js';
export type { ModelSize, RoFormerV2Config } from './config.js';
export { readModelDir, writeModelDir, readModelConfig, ModelDirError, CONFIG_FILE, WEIGHTS_FILE } from './model-dir.js';
export { toHuggingFaceName, fromHuggingFaceName } from './checkpoint-names.js';
export { readSafetensors, writeSafetensorsAtomic, writeFileAtomic, SafetensorsError } from './safetensors.js';
export { Trainer, optimizerSteps } from './trainer.js';
export type { TrainerOptions, TrainStepResult, MicroBatch, StepResult } from './trainer.js';
export { linearWarmupDecay, piecewiseLinear, constant, residualWarmup } from './schedules.js';
export type { Schedule } from './schedules.js';
export { readCheckpoint, resolveCheckpointDir, CheckpointError } from './checkpoint.js';
export { Tokenizer, TokenizerError, buildVocab, SPECIAL_TOKENS } from './tokenizer.js';
export { Corpus, CorpusError } from './corpus.js';
export type { CorpusOptions, CorpusPosition, CorpusProblem, Document } from './corpus.js';
export { maskSample, Random } from './masking.js';
export type { MaskingScheme, MaskingOptions, MaskedSample } from './masking.js';
export { MlmPipeline, jiebaSegmenter } from './pipeline.js';
export type { PipelineOptions, PipelinePosition, MlmBatch, Segmenter } from './pipeline.js';
export { pretrain } from './pretrain.js';
export type { PretrainEvent, PretrainResult, PretrainHooks } from './pretrain.js';
export { resolvePretrainConfig, validatePretrainConfig, PretrainConfigError, PRETRAIN_DEFAULTS, DEMO_OVERRIDES } from './pretrain-config.js';
export type { PretrainConfig } from './pretrain-config.js';
export { fillMask, loadForInference } from './fill-mask.js';
export type { MaskPrediction } from './fill-mask.js';
export { readMetrics, reportSvg } from './report.js';
export type { Metric, TrainMetric, EvalMetric } from './report.js';
export { runtimeInfo, setNumThreads, manualSeed, cudaAvailable } from './runtime.js';
export type { RuntimeInfo } from './runtime.js';
export { loadNative, NativeLoadError } from '../bindings/load.js';
