// The models users hold: RoFormerV2, GAU-α and the RoBERTa-style baseline, thin typed
// wrappers over the native modules (native/modules.h, native/gau_alpha.h, native/baseline.h).
// loadPretrained() and createEncoder() pick RoFormerV2 or GAU-α by the config's model_type.
//
//   const model = await RoFormerV2.fromPretrained('my-model');
//   const hidden = await model.forward(inputIds);          // (batch, seq, hidden)
//   const logits = await model.mlmLogits(hidden);           // (batch·seq, vocab)

import { loadNative } from '../../bindings/load.js';
import type { Architecture, Device, DType, NativeModule, Tensor } from '../../bindings/native.js';
import type { ModelSize, RoFormerV2Config } from './config.js';
import { architectureOf, resolveEncoderConfig, type EncoderConfig } from './encoder-config.js';
import type { GauAlphaConfig } from './gau-alpha-config.js';
import { readModelConfig, readModelDir, writeModelDir } from './model-dir.js';
import { isTensor } from './tensor.js';

export interface ForwardOptions {
  /** (batch, seq) segment ids; all 0 when omitted (as the released scripts feed). */
  tokenTypeIds?: Tensor;
  /** (batch, seq), non-zero at real tokens; defaults to inputIds != pad_token_id. */
  attentionMask?: Tensor;
}

export interface CreateOptions<C extends EncoderConfig = RoFormerV2Config> {
  /** A named size from the spec's table (default 'base'); `config` overrides single keys. */
  size?: ModelSize;
  config?: Partial<C>;
  /** Same seed → same weights. */
  seed?: number;
  device?: Device;
  dtype?: DType;
}

/** What every encoder shares: a native encoder, its device, its mode. */
abstract class Encoder<C extends EncoderConfig = EncoderConfig> {
  protected constructor(
    /** The native module; the trainer drives it directly. */
    readonly native: NativeModule,
    readonly config: C,
    private currentDevice: string = 'cpu',
  ) {}

  get architecture(): Architecture {
    return this.native.kind as Architecture;
  }
  get device(): string {
    return this.currentDevice;
  }
  get parameterCount(): number {
    return this.native.parameterCount;
  }
  get training(): boolean {
    return this.native.training;
  }

  /**
   * Resolves once every step and forward pass submitted before it has finished.
   * All native work runs on one thread in submission order, so after this the
   * weights are at rest until the next call.
   */
  idle(): Promise<void> {
    return this.native.idle();
  }

  /**
   * Frees the model's native memory (CPU or GPU) now instead of when the garbage
   * collector gets to it. A Trainer made for this model holds the weights too:
   * dispose it as well. Any later use throws a clear error.
   */
  dispose(): void {
    this.native.dispose();
  }
  get disposed(): boolean {
    return this.native.disposed;
  }

  /** Applies the device/dtype options of create() and fromPretrained(), if any. */
  protected place(options: { device?: Device; dtype?: DType }): this {
    return options.device || options.dtype ? this.to(options.device ?? 'cpu', options.dtype) : this;
  }

  /** Dropout on (training) or off (evaluation), as in PyTorch. */
  train(on = true): this {
    this.native.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Moves the weights to a device (and optionally casts them). */
  to(device: Device | string, dtype?: DType): this {
    this.native.to(device, dtype);
    this.currentDevice = device === 'cuda' ? 'cuda:0' : device;
    return this;
  }

  /** Hidden states (batch, seq, hidden) for token ids (batch, seq), computed off the JS thread. */
  async forward(inputIds: Tensor, options: ForwardOptions = {}): Promise<Tensor> {
    const moved: Tensor[] = [];
    const onDevice = (t: Tensor | undefined): Tensor | null => {
      if (t === undefined || t === null) return null;
      // Anything but a live tensor goes to the native side as it is: its error names the argument.
      if (!isTensor(t) || t.disposed || t.device === this.currentDevice) return t;
      const copy = t.to(this.currentDevice);
      moved.push(copy);
      return copy;
    };
    try {
      return await this.native.forward(
        onDevice(inputIds) as Tensor,
        onDevice(options.tokenTypeIds),
        onDevice(options.attentionMask),
      );
    } finally {
      for (const t of moved) t.dispose();
    }
  }

  /**
   * MLM logits (n, vocab) for the hidden states at `positions`: flat indices into
   * batch·seq (all positions when omitted). Training computes only the targets.
   */
  async mlmLogits(hidden: Tensor, positions?: Tensor): Promise<Tensor> {
    return this.native.mlmLogits(hidden, positions ?? null);
  }

  /** Detached views of the live weights by native name (copy with .to() to keep a snapshot). */
  namedParameters(): Record<string, Tensor> {
    return this.native.namedParameters();
  }

  /** Replaces every weight; strict about names and shapes. */
  loadStateDict(state: Record<string, Tensor>): void {
    this.native.loadStateDict(state);
  }

  /** The config as it should be saved: with the current residual scale α. */
  savedConfig(): C {
    return { ...this.config, residual_scale: this.native.residualScale };
  }

  /** α, the residual scale of RoFormerV2's post-norm blocks (0 → 1 during warm-up). */
  get residualScale(): number {
    return this.native.residualScale;
  }
  setResidualScale(alpha: number): void {
    this.native.setResidualScale(alpha);
  }
}

function createNative<C extends EncoderConfig>(architecture: Architecture, options: CreateOptions<C>, modelType: C['model_type']): { native: NativeModule; config: C } {
  const overrides = { ...(options.size ? { size: options.size } : {}), ...options.config, model_type: modelType } as Parameters<typeof resolveEncoderConfig>[0];
  const config = resolveEncoderConfig(overrides) as C;
  const native = loadNative().createModel(architecture, config, options.seed);
  return { native, config };
}

/** Reads a model dir's weights into a new native model of its config's architecture. */
async function loadNativeFromDir<C extends EncoderConfig>(dir: string, modelType: C['model_type']): Promise<{ native: NativeModule; config: C }> {
  const { config, state } = await readModelDir(dir);
  try {
    if (config.model_type !== modelType) {
      const other = config.model_type === 'gau_alpha' ? 'GAU-α (model_type "gau_alpha"): load it with GauAlpha.fromPretrained or loadPretrained' : 'RoFormerV2: load it with RoFormerV2.fromPretrained or loadPretrained';
      throw new Error(`${dir} holds a ${other}`);
    }
    const native = loadNative().createModel(architectureOf(config), config);
    native.loadStateDict(state);
    native.setResidualScale(config.residual_scale);
    return { native, config: config as C };
  } finally {
    for (const t of Object.values(state)) t.dispose();
  }
}

/** What a model that can be saved adds: writing its model dir. */
abstract class TrainableModel<C extends EncoderConfig> extends Encoder<C> {
  /**
   * Writes config.json and model.safetensors in the Hugging Face layout (atomically
   * per file). Waits for steps and forward passes already submitted, then copies
   * the weights at once, so a step can never be saved half-applied.
   */
  async save(dir: string): Promise<void> {
    await this.idle();
    const parameters = this.namedParameters();
    try {
      await writeModelDir(dir, this.savedConfig(), parameters);
    } finally {
      for (const t of Object.values(parameters)) t.dispose();
    }
  }
}

export class RoFormerV2 extends TrainableModel<RoFormerV2Config> {
  private constructor(native: NativeModule, config: RoFormerV2Config) {
    super(native, config);
  }

  /** A new model with the authors' initialisation, in training mode (as PyTorch modules start). */
  static create(options: CreateOptions = {}): RoFormerV2 {
    const { native, config } = createNative<RoFormerV2Config>('roformer-v2', options, 'roformer');
    return new RoFormerV2(native, config).place(options);
  }

  /**
   * Loads a Hugging Face RoFormerV2 model dir (config.json + model.safetensors),
   * in evaluation mode as transformers' from_pretrained does.
   */
  static async fromPretrained(dir: string, options: { device?: Device; dtype?: DType } = {}): Promise<RoFormerV2> {
    const { native, config } = await loadNativeFromDir<RoFormerV2Config>(dir, 'roformer');
    return new RoFormerV2(native, config).place(options).eval();
  }
}

/**
 * GAU-α: one gated attention unit per layer in place of attention + feed-forward
 * (native/gau_alpha.h). Model dirs use the PyTorch port's names and config.json.
 */
export class GauAlpha extends TrainableModel<GauAlphaConfig> {
  private constructor(native: NativeModule, config: GauAlphaConfig) {
    super(native, config);
  }

  /** A new model initialised as the port does (normal(0, initializer_range), scales 1), in training mode. */
  static create(options: CreateOptions<GauAlphaConfig> = {}): GauAlpha {
    const { native, config } = createNative<GauAlphaConfig>('gau-alpha', options, 'gau_alpha');
    return new GauAlpha(native, config).place(options);
  }

  /** Loads a GAU-α model dir (the port's config.json and tensor names), in evaluation mode. */
  static async fromPretrained(dir: string, options: { device?: Device; dtype?: DType } = {}): Promise<GauAlpha> {
    const { native, config } = await loadNativeFromDir<GauAlphaConfig>(dir, 'gau_alpha');
    return new GauAlpha(native, config).place(options).eval();
  }
}

/** Either trainable architecture: what the stages train, save and load. */
export type TrainableEncoder = RoFormerV2 | GauAlpha;

/** A new model of the architecture its config's model_type names (RoFormerV2 when absent). */
export function createEncoder(options: CreateOptions<EncoderConfig> = {}): TrainableEncoder {
  return options.config?.model_type === 'gau_alpha'
    ? GauAlpha.create(options as CreateOptions<GauAlphaConfig>)
    : RoFormerV2.create(options as CreateOptions<RoFormerV2Config>);
}

/** Loads a model dir of either architecture (its config.json's model_type decides), in evaluation mode. */
export async function loadPretrained(dir: string, options: { device?: Device; dtype?: DType } = {}): Promise<TrainableEncoder> {
  const config = await readModelConfig(dir);
  return config.model_type === 'gau_alpha' ? GauAlpha.fromPretrained(dir, options) : RoFormerV2.fromPretrained(dir, options);
}

/**
 * The RoBERTa-style encoder RoFormerV2's authors compare training speed against:
 * same sizes, with biases, LayerNorm gains, learned positions and GELU put back.
 */
export class RobertaBaseline extends Encoder<RoFormerV2Config> {
  private constructor(native: NativeModule, config: RoFormerV2Config) {
    super(native, config);
  }

  static create(options: CreateOptions = {}): RobertaBaseline {
    const { native, config } = createNative<RoFormerV2Config>('roberta-baseline', options, 'roformer');
    return new RobertaBaseline(native, config).place(options);
  }
}
