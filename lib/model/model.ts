// The models users hold: RoFormerV2 and the RoBERTa-style baseline, thin typed
// wrappers over the native modules (native/modules.h, native/baseline.h).
//
//   const model = await RoFormerV2.fromPretrained('my-model');
//   const hidden = await model.forward(inputIds);          // (batch, seq, hidden)
//   const logits = await model.mlmLogits(hidden);           // (batch·seq, vocab)

import { loadNative } from '../../bindings/load.js';
import type { Architecture, Device, DType, NativeModule, Tensor } from '../../bindings/native.js';
import { resolveConfig, type ModelSize, type RoFormerV2Config } from './config.js';
import { readModelDir, writeModelDir } from './model-dir.js';
import { isTensor } from './tensor.js';

export interface ForwardOptions {
  /** (batch, seq) segment ids; all 0 when omitted (as the released scripts feed). */
  tokenTypeIds?: Tensor;
  /** (batch, seq), non-zero at real tokens; defaults to inputIds != pad_token_id. */
  attentionMask?: Tensor;
}

export interface CreateOptions {
  /** A named size from the spec's table (default 'base'); `config` overrides single keys. */
  size?: ModelSize;
  config?: Partial<RoFormerV2Config>;
  /** Same seed → same weights. */
  seed?: number;
  device?: Device;
  dtype?: DType;
}

/** What RoFormerV2 and the baseline share: a native encoder, its device, its mode. */
abstract class Encoder {
  protected constructor(
    /** The native module; the trainer drives it directly. */
    readonly native: NativeModule,
    readonly config: RoFormerV2Config,
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
  savedConfig(): RoFormerV2Config {
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

function createNative(architecture: Architecture, options: CreateOptions): { native: NativeModule; config: RoFormerV2Config } {
  const config = resolveConfig({ ...(options.size ? { size: options.size } : {}), ...options.config });
  const native = loadNative().createModel(architecture, config, options.seed);
  return { native, config };
}

export class RoFormerV2 extends Encoder {
  private constructor(native: NativeModule, config: RoFormerV2Config) {
    super(native, config);
  }

  /** A new model with the authors' initialisation, in training mode (as PyTorch modules start). */
  static create(options: CreateOptions = {}): RoFormerV2 {
    const { native, config } = createNative('roformer-v2', options);
    return new RoFormerV2(native, config).place(options);
  }

  /**
   * Loads a Hugging Face RoFormerV2 model dir (config.json + model.safetensors),
   * in evaluation mode as transformers' from_pretrained does.
   */
  static async fromPretrained(dir: string, options: { device?: Device; dtype?: DType } = {}): Promise<RoFormerV2> {
    const { config, state } = await readModelDir(dir);
    const model = new RoFormerV2(loadNative().createModel('roformer-v2', config), config);
    try {
      model.loadStateDict(state);
    } finally {
      for (const t of Object.values(state)) t.dispose();
    }
    model.setResidualScale(config.residual_scale);
    return model.place(options).eval();
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

/**
 * The RoBERTa-style encoder RoFormerV2's authors compare training speed against:
 * same sizes, with biases, LayerNorm gains, learned positions and GELU put back.
 */
export class RobertaBaseline extends Encoder {
  private constructor(native: NativeModule, config: RoFormerV2Config) {
    super(native, config);
  }

  static create(options: CreateOptions = {}): RobertaBaseline {
    const { native, config } = createNative('roberta-baseline', options);
    return new RobertaBaseline(native, config).place(options);
  }
}
