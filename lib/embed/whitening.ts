// BERT-whitening with its two hyperparameters (Su Jianlin, kexue.fm/archives/8069 and
// kexue.fm/archives/9079 "当BERT-whitening引入超参数：总有一款适合你"). From the
// embeddings x_i (rows) of a corpus:
//
//   μ = mean of the x_i,   Σ = (1/N) Σ (x_i − μ)ᵀ(x_i − μ) = U Λ Uᵀ   (eigenvalues largest first)
//   x̃ = (x − β·μ) · U[:, :k] · Λ[:k]^(−γ/2)
//
// β interpolates the centring (0: none, 1: subtract μ), γ the scaling (0: rotation
// onto the principal axes only, 1: every axis scaled to unit variance); k keeps the
// k directions of largest variance. β = γ = 1, k = d is the original whitening, whose
// output has identity covariance on the corpus; β = γ = 0 with k = d is a rotation
// and leaves every cosine similarity as it was.
//
// Saved as one safetensors file (float64 `mean` (d), `eigenvalues` (d), `eigenvectors`
// (d, d)) with k, β and γ in its metadata: the whole decomposition is kept, so the same
// file can be re-applied with another k, β or γ without refitting.

import { readSafetensors, SafetensorsError, writeSafetensorsAtomic } from '../model/safetensors.js';
import { checkValue, fraction, positiveInteger } from '../util/value-kinds.js';
import { symmetricEigen } from './symmetric-eigen.js';

/** Where `roformer embed --fit-whitening` saves by default, beside the model. */
export const WHITENING_FILE = 'whitening.safetensors';

export interface WhiteningSettings {
  /** Dimensions kept (default: all). */
  k?: number;
  /** Centring, 0 to 1 (default 1). */
  beta?: number;
  /** Scaling, 0 to 1 (default 1). */
  gamma?: number;
  /** The pooling of the embeddings it is fitted on, kept so it is not applied to another kind. */
  pooling?: string;
}

export class WhiteningError extends Error {
  override name = 'WhiteningError';
}

export class Whitening {
  readonly k: number;
  readonly beta: number;
  readonly gamma: number;
  readonly pooling: string | undefined;
  /** (d, k) row-major: U[:, :k] · Λ[:k]^(−γ/2). */
  private readonly transform: Float64Array;

  private constructor(
    /** μ, length d. */
    readonly mean: Float64Array,
    /** Λ, largest first. */
    readonly eigenvalues: Float64Array,
    /** U, (d, d) row-major, column j for eigenvalues[j]. */
    readonly eigenvectors: Float64Array,
    settings: WhiteningSettings,
  ) {
    const d = mean.length;
    this.k = checkValue(positiveInteger, settings.k ?? d, 'whitening k');
    if (this.k > d) throw new WhiteningError(`whitening k must be at most the embedding size ${d}, got ${this.k}`);
    this.beta = checkValue(fraction, settings.beta ?? 1, 'whitening beta');
    this.gamma = checkValue(fraction, settings.gamma ?? 1, 'whitening gamma');
    this.pooling = settings.pooling;
    // A direction with no variance cannot be scaled to unit variance: it is floored
    // far below the largest so that γ > 0 gives large, finite values rather than ∞.
    const floor = Math.max(eigenvalues[0]!, 0) * 1e-12 || Number.MIN_VALUE;
    const scale = Array.from(eigenvalues.subarray(0, this.k), (l) => Math.max(l, floor) ** (-this.gamma / 2));
    this.transform = new Float64Array(d * this.k);
    for (let r = 0; r < d; r++) for (let j = 0; j < this.k; j++) this.transform[r * this.k + j] = eigenvectors[r * d + j]! * scale[j]!;
  }

  /** Fits μ and Σ's eigendecomposition to `rows` (at least 2, all of one length). */
  static fit(rows: readonly ArrayLike<number>[], settings: WhiteningSettings = {}): Whitening {
    if (rows.length < 2) throw new WhiteningError(`whitening needs at least 2 embeddings to fit, got ${rows.length}`);
    const d = rows[0]!.length;
    const mean = new Float64Array(d);
    rows.forEach((row, i) => {
      if (row.length !== d) throw new WhiteningError(`embedding ${i} has ${row.length} values, embedding 0 has ${d}`);
      for (let h = 0; h < d; h++) mean[h] += row[h]!;
    });
    for (let h = 0; h < d; h++) mean[h] /= rows.length;
    // Σ's upper triangle, accumulated row by row, then mirrored.
    const covariance = new Float64Array(d * d);
    const centred = new Float64Array(d);
    for (const row of rows) {
      for (let h = 0; h < d; h++) centred[h] = row[h]! - mean[h]!;
      for (let p = 0; p < d; p++) {
        const cp = centred[p]!;
        for (let q = p; q < d; q++) covariance[p * d + q] += cp * centred[q]!;
      }
    }
    for (let p = 0; p < d; p++) {
      for (let q = p; q < d; q++) {
        covariance[p * d + q] /= rows.length;
        covariance[q * d + p] = covariance[p * d + q]!;
      }
    }
    const { values, vectors } = symmetricEigen(covariance, d);
    return new Whitening(mean, values, vectors, settings);
  }

  /** The same fit with other settings (no refit). */
  with(settings: WhiteningSettings): Whitening {
    return new Whitening(this.mean, this.eigenvalues, this.eigenvectors, { k: this.k, beta: this.beta, gamma: this.gamma, pooling: this.pooling, ...definedOnly(settings) });
  }

  /** Embedding size it was fitted on. */
  get inputDimension(): number {
    return this.mean.length;
  }

  /** x̃ = (x − β·μ) · U[:, :k] · Λ[:k]^(−γ/2) for each row. */
  apply(rows: readonly ArrayLike<number>[]): Float32Array[] {
    const d = this.inputDimension;
    const k = this.k;
    const shifted = new Float64Array(d);
    return rows.map((row, i) => {
      if (row.length !== d) throw new WhiteningError(`embedding ${i} has ${row.length} values but the whitening was fitted on ${d}`);
      for (let h = 0; h < d; h++) shifted[h] = row[h]! - this.beta * this.mean[h]!;
      const out = new Float64Array(k);
      for (let r = 0; r < d; r++) {
        const x = shifted[r]!;
        if (x === 0) continue;
        const base = r * k;
        for (let j = 0; j < k; j++) out[j] += x * this.transform[base + j]!;
      }
      return Float32Array.from(out);
    });
  }

  async save(path: string): Promise<void> {
    const d = this.inputDimension;
    const f64 = (name: string, values: Float64Array, shape: number[]) => ({ name, dtype: 'F64' as const, shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
    await writeSafetensorsAtomic(
      path,
      [f64('mean', this.mean, [d]), f64('eigenvalues', this.eigenvalues, [d]), f64('eigenvectors', this.eigenvectors, [d, d])],
      {
        format: 'roformer-whitening',
        k: String(this.k),
        beta: String(this.beta),
        gamma: String(this.gamma),
        ...(this.pooling ? { pooling: this.pooling } : {}),
      },
    );
  }

  /** A saved whitening; `settings` override the saved k, β, γ. */
  static async load(path: string, settings: WhiteningSettings = {}): Promise<Whitening> {
    let file;
    try {
      file = await readSafetensors(path);
    } catch (error) {
      if (error instanceof SafetensorsError) throw new WhiteningError(`${path} is not a whitening file: ${error.message}`);
      throw error;
    }
    const tensor = (name: string, shape: (d: number) => number[]): Float64Array => {
      const entry = file.tensors.get(name);
      if (!entry) throw new WhiteningError(`${path} has no tensor '${name}': not a whitening file (roformer embed --fit-whitening writes one)`);
      const d = file.tensors.get('mean')?.shape[0] ?? 0;
      const want = shape(d);
      if (entry.dtype !== 'F64' || entry.shape.join(',') !== want.join(',')) {
        throw new WhiteningError(`${path}: tensor '${name}' is ${entry.dtype} [${entry.shape}], expected F64 [${want}]`);
      }
      // Copied out: the entry's bytes may not be 8-byte aligned within the file buffer.
      return new Float64Array(Uint8Array.from(entry.data).buffer);
    };
    const mean = tensor('mean', (d) => [d]);
    const eigenvalues = tensor('eigenvalues', (d) => [d]);
    const eigenvectors = tensor('eigenvectors', (d) => [d, d]);
    const saved = (key: string): number | undefined => (file.metadata[key] === undefined ? undefined : Number(file.metadata[key]));
    try {
      return new Whitening(mean, eigenvalues, eigenvectors, { k: saved('k'), beta: saved('beta'), gamma: saved('gamma'), pooling: file.metadata.pooling, ...definedOnly(settings) });
    } catch (error) {
      throw new WhiteningError(`${path}: ${(error as Error).message}`);
    }
  }
}

function definedOnly(settings: WhiteningSettings): WhiteningSettings {
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
}
