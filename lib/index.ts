// roformer-v2: train RoFormerV2 language models from TypeScript on libtorch.
//
// Importing this module never loads the native addon; the first call that needs
// libtorch does (bindings/load.ts), and explains any failure.

export { tensor, tensorFromBytes, isTensor } from './model/tensor.js';
export type { Device, DType, Tensor, TensorArray, NestedNumbers } from './model/tensor.js';
export { RoFormerV2, GauAlpha, RobertaBaseline, createEncoder, loadPretrained } from './model/model.js';
export type { CreateOptions, ForwardOptions, TrainableEncoder } from './model/model.js';
export { NormalizedAttention, GatedAttentionUnit, GauLayer } from './model/gau-layers.js';
export type { GauOptions } from './model/gau-layers.js';
export { GAU_ALPHA_SIZES, validateGauAlphaConfig } from './model/gau-alpha-config.js';
export type { GauAlphaConfig } from './model/gau-alpha-config.js';
export { validateEncoderConfig, resolveEncoderConfig } from './model/encoder-config.js';
export type { EncoderConfig } from './model/encoder-config.js';
export { RotaryEmbedding, RMSNorm, SelfAttention, EncoderBlock } from './model/layers.js';
export type { SelfAttentionOptions, EncoderBlockOptions } from './model/layers.js';
export { MODEL_SIZES, ConfigError, resolveConfig, validateConfig, interpolationFactor } from './model/config.js';
export type { ModelSize, RoFormerV2Config, AttentionNormalization, NormPosition } from './model/config.js';
export { readModelDir, writeModelDir, readModelConfig, ModelDirError, CONFIG_FILE, WEIGHTS_FILE } from './model/model-dir.js';
export { toHuggingFaceName, fromHuggingFaceName, checkpointNamesOf } from './model/checkpoint-names.js';
export { readSafetensors, writeSafetensorsAtomic, SafetensorsError } from './model/safetensors.js';
export { writeFileAtomic } from './util/atomic-file.js';
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
  HeadsError,
  HEADS_CONFIG_FILE,
  HEADS_WEIGHTS_FILE,
} from './training/heads.js';
export type { HeadSpec, HeadSpecs } from './training/heads.js';
export { decodePredictions } from './tasks/decode.js';
export { collate, addInputNoise, noisyExample, disposeBatch, BatchError } from './tasks/batch.js';
export type { CollateOptions, InputNoiseOptions } from './tasks/batch.js';
export { linearWarmupDecay, warmupThenConstant, piecewiseLinear, constant, residualWarmup } from './training/schedules.js';
export type { Schedule } from './training/schedules.js';
export { readCheckpoint, resolveCheckpointDir, CheckpointError } from './training/checkpoint.js';
export { Tokenizer, TokenizerError, buildVocab, SPECIAL_TOKENS } from './data/tokenizer.js';
export type { TokensWithOffsets } from './data/tokenizer.js';
export { Corpus, CorpusError } from './data/corpus.js';
export type { CorpusOptions, CorpusPosition, CorpusProblem, Document } from './data/corpus.js';
export { maskSample, Random } from './data/masking.js';
export type { MaskingScheme, MaskingOptions, MaskedSample } from './data/masking.js';
export { MlmPipeline, jiebaSegmenter } from './data/pipeline.js';
export type { PipelineOptions, PipelinePosition, MlmBatch, Segmenter } from './data/pipeline.js';
export { pretrain } from './pretrain/pretrain.js';
export type { PretrainEvent, PretrainResult, PretrainHooks } from './pretrain/pretrain.js';
export { resolvePretrainConfig, validatePretrainConfig, checkPretrainConfig, PretrainConfigError, PRETRAIN_DEFAULTS, DEMO_OVERRIDES } from './pretrain/config.js';
export type { PretrainConfig } from './pretrain/config.js';
export { fillMask, loadForInference } from './pretrain/fill-mask.js';
export type { MaskPrediction } from './pretrain/fill-mask.js';
export { runTraining } from './training/run-loop.js';
export type { TrainingStage, TrainingBatch, StepTrainer, EvalFigures, RunOptions, RunEvent, RunResult } from './training/run-loop.js';
export { openRunDir, readRunConfig, writeRunConfig } from './training/run-dir.js';
export { readMetrics, appendMetric, figure } from './training/metrics.js';
export type { Metric, TrainMetric, EvalMetric } from './training/metrics.js';
export { reportSvg, writeReport } from './training/report.js';
export { runtimeInfo, setNumThreads, manualSeed, cudaAvailable } from './model/runtime.js';
export type { RuntimeInfo } from './model/runtime.js';
export { TASKS, TASK_NAMES, CLUENER_LABELS, getTask, jsonlTask, toTaskSpec, taskFromJSON, sortLabels, TaskError } from './tasks/registry.js';
export type { TaskSpec, Task, JsonlTaskSpec, FormatName, MetricName } from './tasks/registry.js';
export { readTaskFile, loadTaskFile, resolveTask, formatProblems, TaskFormatError } from './tasks/load.js';
export type { ReadOptions, LoadOptions, ReadRecord, ReadTaskFile, LoadedTaskFile } from './tasks/load.js';
export type { TaskRecord, CharSpan, Choice } from './tasks/formats.js';
export { Encoder, encodeTexts, longestFirst, charSpanToTokens } from './tasks/encode.js';
export {
  accuracy,
  majorityClass,
  majorityAccuracy,
  spanF1,
  multilabelF1,
  cmrcSegments,
  cmrcExactMatch,
  cmrcF1,
  cmrcScores,
  taskMetrics,
} from './tasks/metrics.js';
export type { PrecisionRecallF1, LabelledSpan } from './tasks/metrics.js';
export { predictionFromClassScores, predictionFromMultilabelScores, predictionFromOptionScores, predictionFromSpanScores } from './tasks/predictions.js';
export type { SpanScores, SpanDecodeOptions, SpanSource } from './tasks/predictions.js';
export { writeDemoTasks, ensureDemoTasks, demoTaskSpecs, DEMO_TASK_NAMES } from './tasks/demo-tasks.js';
export type { DemoTask, DemoTaskOptions } from './tasks/demo-tasks.js';
export { SentenceEncoder, POOLINGS, EMBED_DEFAULTS } from './embed/sentence-encoder.js';
export type { Pooling, EmbedOptions } from './embed/sentence-encoder.js';
export { Whitening, WhiteningError, WHITENING_FILE } from './embed/whitening.js';
export type { WhiteningSettings } from './embed/whitening.js';
export { exportOnnx, ONNX_MODEL_FILE } from './export/onnx-export.js';
export { loadNative, NativeLoadError } from '../bindings/load.js';
export { TaskSampler } from './tasks/sampler.js';
export { ExampleStream } from './tasks/example-stream.js';
export type { StreamPosition } from './tasks/example-stream.js';
export { SupervisedStage, MLM_TASK } from './tasks/supervised-stage.js';
export type { StageTask, StageMlm, SupervisedStageOptions } from './tasks/supervised-stage.js';
export { evaluateTask, isLabelled } from './tasks/evaluate.js';
export type { TaskEvaluation } from './tasks/evaluate.js';
export { finetune, FINETUNE_DEFAULTS, RESULTS_FILE } from './tasks/finetune.js';
export type { FinetuneConfig, FinetuneResults, FinetuneHooks, Metrics } from './tasks/finetune.js';
export { multitask, readTaskList, MULTITASK_DEFAULTS, TaskListError } from './tasks/multitask.js';
export type { MultitaskConfig, MultitaskResults, TaskListEntry } from './tasks/multitask.js';
export { loadFineTuned, pickTask } from './tasks/fine-tuned.js';
export type { FineTunedModel } from './tasks/fine-tuned.js';
export { prepareEncoder, headFor, headsFor, TASKS_FILE } from './tasks/setup.js';
export { runStage } from './training/stage.js';
export type { StageHooks, StageSettings, StageContext, StagePlan, StageDescription } from './training/stage.js';
export { TRAINING_DEFAULTS } from './training/defaults.js';
export { SettingError } from './util/value-kinds.js';
export { checkFinetuneConfig, checkMultitaskConfig } from './tasks/config.js';
export { trainTasks } from './tasks/multitask.js';
export type { TasksRun, TrainedTasks } from './tasks/multitask.js';
export { Distributed, DistributedError, distributedFromEnv } from './training/distributed.js';
export type { DistributedSettings, Shard } from './training/distributed.js';
