// roformer-v2: train RoFormerV2 language models from TypeScript on libtorch.
//
// Importing this module never loads the native addon; the first call that needs
// libtorch does (bindings/load.ts), and explains any failure.

export { tensor, tensorFromBytes, isTensor } from './model/tensor.js';
export type { Device, DType, Tensor, TensorArray, NestedNumbers } from './model/tensor.js';
export { RoFormerV2, RobertaBaseline } from './model/model.js';
export type { CreateOptions, ForwardOptions } from './model/model.js';
export { RotaryEmbedding, RMSNorm, SelfAttention, EncoderBlock } from './model/layers.js';
export type { SelfAttentionOptions, EncoderBlockOptions } from './model/layers.js';
export { MODEL_SIZES, ConfigError, resolveConfig, validateConfig, interpolationFactor } from './model/config.js';
export type { ModelSize, RoFormerV2Config } from './model/config.js';
export { readModelDir, writeModelDir, readModelConfig, ModelDirError, CONFIG_FILE, WEIGHTS_FILE } from './model/model-dir.js';
export { toHuggingFaceName, fromHuggingFaceName } from './model/checkpoint-names.js';
export { readSafetensors, writeSafetensorsAtomic, writeFileAtomic, SafetensorsError } from './model/safetensors.js';
export { Trainer, optimizerSteps } from './training/trainer.js';
export type {
  TrainerOptions,
  TrainStepResult,
  MicroBatch,
  StepResult,
  AnyMicroBatch,
  TaskMicroBatch,
  TaskStepResult,
  HeadPrediction,
  GradientNormalization,
} from './training/trainer.js';
export type { HeadKind, EncodedText, TokenSpan, Example, LoadedExample, RecordProblem, Prediction } from './tasks/types.js';
export {
  validateHeadSpecs,
  readHeads,
  writeHeads,
  headMismatches,
  decodePredictions,
  HeadsError,
  HEADS_CONFIG_FILE,
  HEADS_WEIGHTS_FILE,
} from './tasks/heads.js';
export type { HeadSpec, HeadSpecs } from './tasks/heads.js';
export { collate, addInputNoise, noisyExample, disposeBatch, BatchError } from './tasks/batch.js';
export type { CollateOptions, InputNoiseOptions } from './tasks/batch.js';
export { linearWarmupDecay, piecewiseLinear, constant, residualWarmup } from './training/schedules.js';
export type { Schedule } from './training/schedules.js';
export { readCheckpoint, resolveCheckpointDir, CheckpointError } from './training/checkpoint.js';
export { Tokenizer, TokenizerError, buildVocab, SPECIAL_TOKENS } from './data/tokenizer.js';
export { Corpus, CorpusError } from './data/corpus.js';
export type { CorpusOptions, CorpusPosition, CorpusProblem, Document } from './data/corpus.js';
export { maskSample, Random } from './data/masking.js';
export type { MaskingScheme, MaskingOptions, MaskedSample } from './data/masking.js';
export { MlmPipeline, jiebaSegmenter } from './data/pipeline.js';
export type { PipelineOptions, PipelinePosition, MlmBatch, Segmenter } from './data/pipeline.js';
export { pretrain } from './pretrain/pretrain.js';
export type { PretrainEvent, PretrainResult, PretrainHooks } from './pretrain/pretrain.js';
export { resolvePretrainConfig, validatePretrainConfig, PretrainConfigError, PRETRAIN_DEFAULTS, DEMO_OVERRIDES } from './pretrain/config.js';
export type { PretrainConfig } from './pretrain/config.js';
export { fillMask, loadForInference } from './pretrain/fill-mask.js';
export type { MaskPrediction } from './pretrain/fill-mask.js';
export { readMetrics, reportSvg } from './training/report.js';
export type { Metric, TrainMetric, EvalMetric } from './training/report.js';
export { runtimeInfo, setNumThreads, manualSeed, cudaAvailable } from './model/runtime.js';
export type { RuntimeInfo } from './model/runtime.js';
export { loadNative, NativeLoadError } from '../bindings/load.js';
