// The typed surface of the native addon (native/addon.cpp registers these names).
// Nothing here loads the addon: see ./load.ts.

/**
 * The head a task trains, named by what it predicts (native/heads.h builds each). Defined
 * here, at the binding layer, because the native side needs it; lib/ re-uses it.
 */
export type HeadKind =
  /** [CLS] → linear (no bias) → softmax cross-entropy over the labels. Also pair matching / NLI. */
  | 'classification'
  /** [CLS] → linear → one logit per label, multi-label "softmax + cross-entropy" (ZLPR) loss. */
  | 'multilabel'
  /** each (context, option) pair: [CLS] → linear(1); softmax across the options. */
  | 'multiple-choice'
  /** GlobalPointer: per label, span scores s(i, j), i ≤ j, ZLPR loss (reading comprehension, NER). */
  | 'span';

/** Every HeadKind, for checks of untrusted input (heads.json, tasks.json). */
export const HEAD_KINDS: readonly HeadKind[] = ['classification', 'multilabel', 'multiple-choice', 'span'];

/** Element types a Tensor can hold. */
export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int32'
  | 'int64'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

/** 'cpu', 'cuda' or 'cuda:N'. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

/** What Tensor.toArray() returns: float16/bfloat16 read back as float32, bool as uint8. */
export type TensorArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Int16Array
  | Int8Array
  | Uint8Array;

/** A handle on a libtorch tensor owned by the addon. */
export interface Tensor {
  readonly shape: number[];
  readonly dtype: DType;
  /** 'cpu' or 'cuda:N'. */
  readonly device: string;
  readonly numel: number;
  readonly disposed: boolean;
  /** Copies the values out (to the CPU first if needed). */
  toArray(): TensorArray;
  /** The raw little-endian bytes in the tensor's own dtype (for serialisation). */
  toBuffer(): Buffer;
  /** A copy on another device and/or with another dtype. */
  to(device?: Device | string | null, dtype?: DType): Tensor;
  /** Frees the memory now; any later use throws. */
  dispose(): void;
  toString(): string;
}

/** The config.json keys the native code reads (Hugging Face names). */
export interface NativeModelConfig {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  type_vocab_size: number;
  max_position_embeddings: number;
  pad_token_id: number;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  layer_norm_eps: number;
  rope_theta: number;
  rope_interpolation_factor: number;
}

export type Architecture = 'roformer-v2' | 'gau-alpha' | 'roberta-baseline';
export type LayerKind = 'rotary' | 'rms_norm' | 'self_attention' | 'encoder_block' | 'normalized_attention' | 'gated_attention_unit' | 'gau_layer';

/** Gradients returned by NativeModule.vjp: d(⟨output, gradOutput⟩)/d(inputs, parameters). */
export interface VjpResult {
  output: Tensor;
  inputs: Array<Tensor | null>;
  parameters: Record<string, Tensor>;
}

/** A libtorch module: a whole encoder or one building block. */
export interface NativeModule {
  readonly kind: Architecture | LayerKind;
  readonly training: boolean;
  readonly parameterCount: number;
  readonly residualScale: number;
  config(): NativeModelConfig & { architecture: Architecture };
  setResidualScale(alpha: number): void;
  train(on?: boolean): void;
  to(device: string, dtype?: DType): void;
  /** Detached views of the live weights, by native name. */
  namedParameters(): Record<string, Tensor>;
  /** Strict: every missing, unexpected or mis-shaped tensor is named in one Error. */
  loadStateDict(state: Record<string, Tensor>): void;
  /** Whole models: hidden states (batch, seq, hidden), computed off the JS thread. */
  forward(inputIds: Tensor, tokenTypeIds: Tensor | null, attentionMask: Tensor | null): Promise<Tensor>;
  /** Whole models: MLM logits (n, vocab) at flat positions (null = all). */
  mlmLogits(hidden: Tensor, positions: Tensor | null): Promise<Tensor>;
  /** Building blocks: the forward pass, synchronously. */
  call(inputs: Array<Tensor | null>): Tensor;
  /** Building blocks: forward plus vector-Jacobian product (for gradient checks). */
  vjp(inputs: Array<Tensor | null>, gradOutput: Tensor): VjpResult;
  /** Resolves once every step or forward pass submitted before it has finished. */
  idle(): Promise<void>;
  /** Frees the weights now (running jobs keep theirs until they end); later use throws. */
  dispose(): void;
  readonly disposed: boolean;
}

/** Options of the native trainer (lib/training/trainer.ts documents them). */
export interface NativeTrainerOptions {
  optimizer?: 'adamw' | 'lamb' | 'adafactor';
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  scaleParameter?: boolean;
  maxGradNorm?: number;
  precision?: 'fp32' | 'bf16' | 'fp16';
  lossScaling?: boolean;
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  /**
   * The static step: loss, gradient norm, skip decision, clipping and learning rate stay
   * on the device and the figures are read back once, after the update (AdamW: the fused
   * kernel where libtorch ≥ 2.4). Default: on for CUDA, off for the CPU.
   */
  staticStep?: boolean;
  /**
   * CUDA graphs (native/cuda_graph_step.h): each MLM step shape is captured once as one graph
   * of the whole static step (forward, backward, clipping, update) and replayed after; steps of
   * task heads, and of shapes beyond the graphs kept, run eagerly. Default: on for CUDA with the
   * static step and AdamW's fused kernel (libtorch ≥ 2.4), without data parallelism or gradient
   * normalisation; true where that does not hold (e.g. on the CPU) is an error that says why.
   */
  cudaGraphs?: boolean;
  /** Task heads trained with the encoder, by task name (lib/training/heads.ts). */
  heads?: Record<string, NativeHeadConfig>;
  /**
   * How the tasks of one step combine: 'none' (sum of the task losses), 'unit' (each
   * task's gradient scaled to unit global norm), 'pareto' (min-norm weights on the simplex).
   */
  gradientNormalization?: GradientNormalization;
  /** Data-parallel training: this rank's process group (createProcessGroup). */
  processGroup?: NativeProcessGroup;
}

/** Settings of one rank of a data-parallel run (lib/training/distributed.ts documents them). */
export interface NativeProcessGroupOptions {
  rank: number;
  worldSize: number;
  localRank?: number;
  masterAddr: string;
  masterPort: number;
  timeoutSeconds?: number;
  backend?: 'auto' | 'gloo' | 'nccl';
  device?: string;
}

/** One rank's c10d process group: collectives run on the executor thread, in order with steps. */
export interface NativeProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  allReduce(values: number[], op?: 'sum' | 'min' | 'max'): Promise<number[]>;
  /** Every rank's string, by rank. */
  allGather(value: string): Promise<string[]>;
  barrier(): Promise<void>;
  shutdown(): Promise<void>;
}

export type GradientNormalization = 'none' | 'unit' | 'pareto';

/** What the native side needs to build a head. */
export interface NativeHeadConfig {
  kind: HeadKind;
  /** Classes (classification), labels (multilabel), span types (span); 1 for multiple-choice. */
  numLabels: number;
  /** span: q/k size per label (default 64, even). */
  headSize?: number;
}

/** One micro-batch of masked-language-model training. */
export interface MicroBatch {
  /** Absent or 'mlm'. */
  task?: 'mlm';
  /** (batch, seq) token ids. */
  inputIds: Tensor;
  tokenTypeIds?: Tensor | null;
  /**
   * (batch, seq), non-zero at real tokens (default: inputIds != pad). Packed rows number
   * their documents instead (1, 2, …; 0 = padding): each document attends only to itself
   * and its RoPE positions start at 0.
   */
  attentionMask?: Tensor | null;
  /** Flat indices into batch·seq of the positions to predict. */
  targetPositions: Tensor;
  /** The original token id at each target position; -100 marks an unused slot (no target). */
  targetIds: Tensor;
}

/**
 * One micro-batch of a task head. Fields per kind:
 * - classification: `labels` (batch,) int class indices;
 * - multilabel: `labels` (batch, numLabels) float targets in [0, 1] (hard 0/1 or soft);
 * - multiple-choice: `inputIds` (examples·options, seq) with each example's options in
 *   consecutive rows, `choiceMask` (examples, options) 1 at real options, `labels` (examples,);
 * - span: `spanLabels` (n, 4) int rows (example, label, start, end), end inclusive, or
 *   `spanTargets` (batch, numLabels, seq, seq) float targets in [0, 1].
 * Labels may be left out for predict().
 */
export interface TaskMicroBatch {
  /** The head's task name. */
  task: string;
  inputIds: Tensor;
  tokenTypeIds?: Tensor | null;
  /** (rows, seq), non-zero at real tokens (default: inputIds != pad). */
  attentionMask?: Tensor | null;
  labels?: Tensor | null;
  choiceMask?: Tensor | null;
  spanLabels?: Tensor | null;
  spanTargets?: Tensor | null;
}

/** A micro-batch of any task: MLM or a head's. */
export type AnyMicroBatch = MicroBatch | TaskMicroBatch;

/** One task's part of a step. */
export interface TaskStepResult {
  /** The task name ('mlm' for masked-language modelling). */
  task: string;
  /** MLM: mean cross-entropy over its targets; heads: mean loss over its examples. */
  loss: number;
  /** The task's own gradient norm (unscaled) when gradients are normalised, else NaN. */
  gradNorm: number;
  /** The factor its gradient entered the sum with: 1 ('none'), 1/gradNorm ('unit'), α ('pareto'). */
  weight: number;
  /** MLM targets, or examples. */
  examples: number;
}

/** A head's outputs for one micro-batch (float32, on the CPU; the caller disposes the tensors). */
export interface HeadPrediction {
  task: string;
  kind: HeadKind;
  /**
   * classification/multilabel: (batch, numLabels) logits; multiple-choice: (examples, options)
   * scores, −inf at padded options; span: (batch, numLabels, seq, seq), −inf where masked.
   */
  scores: Tensor;
  /** The loss when the batch had labels, else null. */
  loss: number | null;
  /** span: (n, 4) int64 rows (example, label, start, end) of the entries scoring > 0. */
  spans?: Tensor;
  /** span: (n,) their scores. */
  spanScores?: Tensor;
}

export interface StepResult {
  /** Mean cross-entropy over the step's targets. */
  loss: number;
  /** Global gradient norm before clipping (inf/NaN when the step was skipped). */
  gradNorm: number;
  /** The loss scale used (1 without loss scaling). */
  lossScale: number;
  /** Non-finite loss or gradients: no update was made. */
  skipped: boolean;
  targets: number;
  /** Optimiser updates so far. */
  step: number;
  skippedSteps: number;
  /** Per task, in order of first appearance among the micro-batches. */
  tasks: TaskStepResult[];
  /** The step ran through a CUDA graph (trainer option cudaGraphs): captured by it, or a replay; absent: eagerly. */
  cudaGraph?: 'captured' | 'replayed';
}

export interface TrainerCounters {
  step: number;
  skippedSteps: number;
  lossScale: number;
  growthTracker: number;
}

export interface NativeTrainer {
  readonly busy: boolean;
  step(microBatches: AnyMicroBatch[], lr: number, alpha: number): Promise<StepResult>;
  evaluate(batch: MicroBatch): Promise<{ lossSum: number; correct: number; targets: number }>;
  predict(batch: TaskMicroBatch): Promise<HeadPrediction>;
  /** The step's combined gradient without an update, by optimiser name ('heads.<task>.…'). */
  gradients(
    microBatches: AnyMicroBatch[],
    alpha: number,
    normalization?: GradientNormalization,
  ): Promise<{ gradients: Record<string, Tensor>; tasks: TaskStepResult[] }>;
  heads(): Record<string, NativeHeadConfig>;
  /** Detached views of the heads' weights, 'heads.<task>.…'. */
  headParameters(): Record<string, Tensor>;
  /** Strict: every missing, unexpected or mis-shaped tensor is named in one Error. */
  loadHeadParameters(state: Record<string, Tensor>): void;
  stateTensors(): Record<string, Tensor>;
  loadStateTensors(state: Record<string, Tensor>): void;
  /** The random generators' states alone ('rng.cpu', 'rng.cuda:N'), as uint8 tensors. */
  randomState(): Record<string, Tensor>;
  loadRandomState(state: Record<string, Tensor>): void;
  counters(): TrainerCounters;
  setCounters(counters: TrainerCounters): void;
  /** Frees the optimiser state and the trainer's hold on the model now; later use throws. */
  dispose(): void;
  readonly disposed: boolean;
}

export interface RuntimeInfo {
  libtorchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  /** libtorch ≥ 2.0: scaled_dot_product_attention is used. */
  fusedAttention: boolean;
  /** The data-parallel backends built in: Gloo and NCCL need their headers at build time. */
  distributedBackends: Array<'gloo' | 'nccl'>;
  numThreads: number;
  availableCores: number;
  parallelInfo: string;
  buildConfig: string;
}

export interface FusedKernelCheckOptions {
  kernel: 'residual_rms_norm' | 'rotary' | 'embedding_rms_norm' | 'dropout' | 'softmax_dropout' | 'batched_matmul' | 'relu';
  device?: string;
  /** The kernel's dtype (f for the residual norm, the tables for the embedding norm); default float64. */
  dtype?: DType;
  /** The residual stream's dtype: the residual norm's x, the embedding norm's output (default: dtype). */
  xDtype?: DType;
  p?: number;
  seed?: number;
  batch?: number;
  seq?: number;
  hidden?: number;
  heads?: number;
  /** rotary: q, k and their gradients as views of (batch, heads, seq, head_dim), as attention's backward gives them. */
  headsFirst?: boolean;
  iters?: number;
}

export interface FusedKernelCheck {
  ok: boolean;
  valueError: number;
  gradientError: number;
  limit: number;
  keptFraction: number;
  fusedMs: number;
  unfusedMs: number;
}

export interface NativeAddon {
  Tensor: abstract new () => Tensor;
  NativeModule: abstract new () => NativeModule;
  tensorFromArray(data: ArrayBufferView, shape: number[], dtype?: DType): Tensor;
  tensorFromBytes(bytes: Uint8Array, shape: number[], dtype: DType): Tensor;
  createModel(architecture: Architecture, config: Partial<NativeModelConfig>, seed?: number): NativeModule;
  createLayer(kind: LayerKind, options: Record<string, unknown>, seed?: number): NativeModule;
  createTrainer(model: NativeModule, options: NativeTrainerOptions): NativeTrainer;
  /** Joins the other ranks (TCPStore rendezvous) and sets up Gloo / NCCL. */
  createProcessGroup(options: NativeProcessGroupOptions): Promise<NativeProcessGroup>;
  optimizerSteps(
    options: NativeTrainerOptions,
    params: Record<string, Tensor>,
    gradsPerStep: Array<Record<string, Tensor>>,
    lrs: number[],
  ): void;
  /** The ZLPR loss per row of `scores` (dense `targets` in [0, 1] or sparse `positives` indices padded with −1) and d(Σ loss)/d(scores). */
  zlprLoss(
    scores: Tensor,
    labels: { targets?: Tensor; positives?: Tensor; valid?: Tensor },
  ): { loss: Tensor; grad: Tensor };
  runtimeInfo(): RuntimeInfo;
  setNumThreads(n: number): void;
  manualSeed(seed: number): void;
  /**
   * The CPU caching allocator of large tensors (native/host_allocator.cpp): bytes held by
   * tensors, kept for reuse, the peak held; allocations served from the cache and not.
   */
  hostCacheStats(): { enabled: boolean; liveBytes: number; cachedBytes: number; peakLiveBytes: number; hits: number; misses: number };
  /** Returns memory freed by native code to the system (the host cache; glibc malloc_trim; the CUDA cache). */
  releaseMemory(): void;
  /** Waits for the device's queued work (no-op on the CPU). */
  synchronize(device?: string): void;
  /** Peak bytes allocated on a CUDA device (0 on the CPU); `reset` starts a new peak. */
  peakMemory(device?: string, reset?: boolean): number;
  /** Seconds per n×n matrix product in dtype on device, averaged over iters. */
  matmulSeconds(n: number, dtype: DType, device: string, iters: number): number;
  /** Starts counting the libtorch ops run on any thread (native/op_count.h); start and stop with nothing in flight. */
  opCountStart(options?: {
    /** Name each op with this many of the ops it ran inside (0–8): "aten::copy_ < aten::_to_copy". */
    parents?: number;
    /** Name each op with its tensor inputs' dtypes: "aten::add(f32, f32)". */
    dtypes?: boolean;
  }): void;
  /**
   * Stops counting: the innermost working ops by name (about one kernel launch each on CUDA), by
   * the part of the training step they ran in ('forward and backward', 'update'; 'other'
   * elsewhere), most frequent first. Every op that ran has an entry (count 0 where it only ever
   * ran around other working ops) with its self time: host wall time inside it less the ops it
   * ran — where a CPU step's time goes (on CUDA only the launch cost).
   */
  opCountStop(): Array<{ phase: string; op: string; count: number; selfSeconds: number }>;
  /** The fused kernels (native/kernels/): whether the CUDA ones are built, and which the model uses on the CPU. */
  fusedKernels(): {
    cuda: boolean;
    usedOnCpu: { residualRmsNorm: boolean; rotary: boolean; embeddingRmsNorm: boolean; dropout: boolean; softmaxDropout: boolean; relu: boolean };
    /** The instruction set the CPU's dropout draws its keep flags with (ROFORMER_CPU_DRAW=avx2|portable picks a lesser one). */
    cpuDropoutDraw: 'avx512' | 'avx2' | 'portable';
  };
  /**
   * One fused kernel against the unfused expression in float64 with the same dropout mask: the
   * relative errors of its values and gradients, the kept fraction, and (iters > 0) the median
   * ms of forward + backward, fused and through the model's unfused chain.
   */
  fusedKernelCheck(options: FusedKernelCheckOptions): FusedKernelCheck;
}
