// Independent float64 reference for RoFormerV2 (spec section 1) and a RoBERTa-style baseline block.
// Plain loops, no libraries: the point is to be obviously correct, not fast. Tests compare the
// native (libtorch) implementation against these functions.

/** Row-major matrix. */
export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function mat(rows: number, cols: number, data?: ArrayLike<number>): Mat {
  if (data !== undefined && data.length !== rows * cols) {
    throw new Error(`mat: expected ${rows * cols} values, got ${data.length}`);
  }
  const out = new Float64Array(rows * cols);
  if (data !== undefined) for (let i = 0; i < out.length; i++) out[i] = data[i]!;
  return { rows, cols, data: out };
}

function get(m: Mat, r: number, c: number): number {
  return m.data[r * m.cols + c]!;
}

/** x (n, in) · wᵀ with w stored (out, in) like torch Linear → (n, out). */
export function matmulT(x: Mat, w: Mat): Mat {
  if (x.cols !== w.cols) throw new Error(`matmulT: x has ${x.cols} cols, w has ${w.cols}`);
  const out = mat(x.rows, w.rows);
  for (let i = 0; i < x.rows; i++) {
    for (let o = 0; o < w.rows; o++) {
      let s = 0;
      for (let k = 0; k < x.cols; k++) s += get(x, i, k) * get(w, o, k);
      out.data[i * w.rows + o] = s;
    }
  }
  return out;
}

function add(a: Mat, b: Mat, scaleB = 1): Mat {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error('add: shape mismatch');
  const out = mat(a.rows, a.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = a.data[i]! + scaleB * b.data[i]!;
  return out;
}

/** Adds a per-column bias to every row (Linear bias). */
function addBias(x: Mat, bias: ArrayLike<number>): Mat {
  if (bias.length !== x.cols) throw new Error('addBias: length mismatch');
  const out = mat(x.rows, x.cols);
  for (let i = 0; i < x.rows; i++) {
    for (let j = 0; j < x.cols; j++) out.data[i * x.cols + j] = get(x, i, j) + bias[j]!;
  }
  return out;
}

function mapMat(x: Mat, f: (v: number) => number): Mat {
  const out = mat(x.rows, x.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = f(x.data[i]!);
  return out;
}

const relu = (v: number): number => (v > 0 ? v : 0);

/** Parameter-free RMS norm per row: x / sqrt(mean(x²) + eps). */
export function rmsNorm(x: Mat, eps: number): Mat {
  const out = mat(x.rows, x.cols);
  for (let i = 0; i < x.rows; i++) {
    let ms = 0;
    for (let j = 0; j < x.cols; j++) ms += get(x, i, j) ** 2;
    const inv = 1 / Math.sqrt(ms / x.cols + eps);
    for (let j = 0; j < x.cols; j++) out.data[i * x.cols + j] = get(x, i, j) * inv;
  }
  return out;
}

/** LayerNorm per row with the biased variance, as torch does. */
export function layerNorm(x: Mat, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number): Mat {
  if (gamma.length !== x.cols || beta.length !== x.cols) throw new Error('layerNorm: length mismatch');
  const out = mat(x.rows, x.cols);
  for (let i = 0; i < x.rows; i++) {
    let mean = 0;
    for (let j = 0; j < x.cols; j++) mean += get(x, i, j);
    mean /= x.cols;
    let v = 0;
    for (let j = 0; j < x.cols; j++) v += (get(x, i, j) - mean) ** 2;
    const inv = 1 / Math.sqrt(v / x.cols + eps);
    for (let j = 0; j < x.cols; j++) {
      out.data[i * x.cols + j] = (get(x, i, j) - mean) * inv * gamma[j]! + beta[j]!;
    }
  }
  return out;
}

/**
 * RoPE with interleaved pairs. Row p sits at position positions[p]; every head slice of width
 * headDim inside the row is rotated the same way: pair (x_{2i}, x_{2i+1}) by angle pos·θ_i,
 * θ_i = base^(-2i/headDim).
 */
export function rotate(x: Mat, headDim: number, positions: number[], base = 10000): Mat {
  if (headDim % 2 !== 0 || x.cols % headDim !== 0) throw new Error('rotate: bad headDim');
  if (positions.length !== x.rows) throw new Error('rotate: one position per row required');
  const out = mat(x.rows, x.cols);
  for (let r = 0; r < x.rows; r++) {
    for (let h = 0; h < x.cols; h += headDim) {
      for (let i = 0; i < headDim / 2; i++) {
        const angle = positions[r]! * Math.pow(base, (-2 * i) / headDim);
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        const a = get(x, r, h + 2 * i);
        const b = get(x, r, h + 2 * i + 1);
        out.data[r * x.cols + h + 2 * i] = a * c - b * s;
        out.data[r * x.cols + h + 2 * i + 1] = a * s + b * c;
      }
    }
  }
  return out;
}

/** Softmax over a score row; subtracting the max keeps exp() from overflowing. */
function softmax(scores: number[]): number[] {
  const m = Math.max(...scores);
  const e = scores.map((s) => Math.exp(s - m));
  const z = e.reduce((acc, v) => acc + v, 0);
  return e.map((v) => v / z);
}

/**
 * Multi-head scaled dot-product attention over one sequence. Keys with keyMask[j] === false get
 * score -Infinity (weight exactly 0). If every key is masked the row is NaN, as in torch.
 */
export function attention(q: Mat, k: Mat, v: Mat, numHeads: number, keyMask?: boolean[]): Mat {
  const hidden = q.cols;
  if (hidden % numHeads !== 0 || k.cols !== hidden || v.cols !== hidden) {
    throw new Error('attention: bad shapes');
  }
  if (k.rows !== v.rows) throw new Error('attention: k and v need the same number of rows');
  if (keyMask !== undefined && keyMask.length !== k.rows) throw new Error('attention: mask length');
  const hd = hidden / numHeads;
  const scale = 1 / Math.sqrt(hd);
  const out = mat(q.rows, hidden);
  for (let h = 0; h < numHeads; h++) {
    const off = h * hd;
    for (let i = 0; i < q.rows; i++) {
      const scores: number[] = [];
      for (let j = 0; j < k.rows; j++) {
        if (keyMask !== undefined && keyMask[j] === false) {
          scores.push(-Infinity);
          continue;
        }
        let s = 0;
        for (let d = 0; d < hd; d++) s += get(q, i, off + d) * get(k, j, off + d);
        scores.push(s * scale);
      }
      const p = softmax(scores);
      for (let d = 0; d < hd; d++) {
        let s = 0;
        // Skip zero weights so that a masked key's value (even Inf/NaN) cannot leak in.
        for (let j = 0; j < k.rows; j++) if (p[j] !== 0) s += p[j]! * get(v, j, off + d);
        out.data[i * hidden + off + d] = s;
      }
    }
  }
  return out;
}

/** RoFormerV2 layer weights, each stored (out, in). */
export interface BlockWeights {
  query: Mat;
  key: Mat;
  value: Mat;
  output: Mat;
  intermediate: Mat;
  ffnOutput: Mat;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** One post-norm RoFormerV2 layer: no biases, no norm gains, relu FFN, α-scaled residuals. */
export function roformerBlock(
  x: Mat,
  w: BlockWeights,
  opts: { numHeads: number; alpha: number; eps: number; keyMask?: boolean[]; positions?: number[]; ropeBase?: number },
): Mat {
  const hd = x.cols / opts.numHeads;
  const positions = opts.positions ?? range(x.rows);
  const q = rotate(matmulT(x, w.query), hd, positions, opts.ropeBase);
  const k = rotate(matmulT(x, w.key), hd, positions, opts.ropeBase);
  const v = matmulT(x, w.value); // v is not rotated
  const a = matmulT(attention(q, k, v, opts.numHeads, opts.keyMask), w.output);
  const x1 = rmsNorm(add(x, a, opts.alpha), opts.eps);
  const f = matmulT(mapMat(matmulT(x1, w.intermediate), relu), w.ffnOutput);
  return rmsNorm(add(x1, f, opts.alpha), opts.eps);
}

export interface ModelWeights {
  wordEmbeddings: Mat; // (V, d)
  tokenTypeEmbeddings: Mat; // (T, d)
  layers: BlockWeights[];
}

/** Full encoder on one sequence, plus MLM logits tied to the word embeddings. */
export function roformerModel(
  ids: number[],
  tokenTypes: number[] | undefined,
  w: ModelWeights,
  opts: { numHeads: number; alpha: number; eps: number; padId?: number; keyMask?: boolean[] },
): { hidden: Mat; logits: Mat } {
  const d = w.wordEmbeddings.cols;
  const types = tokenTypes ?? ids.map(() => 0);
  if (types.length !== ids.length) throw new Error('roformerModel: tokenTypes length');
  let x = mat(ids.length, d);
  for (let p = 0; p < ids.length; p++) {
    const id = ids[p]!;
    const t = types[p]!;
    if (id < 0 || id >= w.wordEmbeddings.rows) throw new Error(`roformerModel: id ${id} out of range`);
    if (t < 0 || t >= w.tokenTypeEmbeddings.rows) throw new Error(`roformerModel: type ${t} out of range`);
    for (let j = 0; j < d; j++) {
      x.data[p * d + j] = get(w.wordEmbeddings, id, j) + get(w.tokenTypeEmbeddings, t, j);
    }
  }
  x = rmsNorm(x, opts.eps); // no position embedding: positions enter only through RoPE
  const padId = opts.padId ?? 0;
  const keyMask = opts.keyMask ?? ids.map((id) => id !== padId);
  for (const layer of w.layers) {
    x = roformerBlock(x, layer, { numHeads: opts.numHeads, alpha: opts.alpha, eps: opts.eps, keyMask });
  }
  return { hidden: x, logits: matmulT(x, w.wordEmbeddings) };
}

// ---------------------------------------------------------------------------------------------
// Baseline (RoBERTa-style post-LayerNorm block with biases and exact GELU)

const SQRT_PI = Math.sqrt(Math.PI);

/**
 * erf for |x| < 2 via the all-positive series
 *   erf(x) = 2/√π · e^{-x²} · Σ_n 2^n x^{2n+1} / (1·3·…·(2n+1)),
 * which has no cancellation (unlike the alternating Taylor series), so it is accurate to ~1e-16.
 */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
    if (Math.abs(term) < 1e-17 * Math.abs(sum)) break;
  }
  return ((2 / SQRT_PI) * Math.exp(-x * x) * sum);
}

/**
 * erfc for x ≥ 2 via the continued fraction
 *   erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))),
 * evaluated bottom-up; it converges fast for large x, where 1 − erf(x) would lose all digits.
 */
function erfcContinuedFraction(x: number): number {
  let f = x;
  for (let n = 120; n >= 1; n--) f = x + n / 2 / f;
  return Math.exp(-x * x) / SQRT_PI / f;
}

function erfc(x: number): number {
  if (x >= 2) return erfcContinuedFraction(x);
  if (x <= -2) return 2 - erfcContinuedFraction(-x);
  return 1 - erfSeries(x);
}

/** Exact GELU: 0.5 x (1 + erf(x/√2)) = 0.5 x erfc(−x/√2) (the erfc form keeps the negative tail accurate). */
export function gelu(x: number): number {
  return 0.5 * x * erfc(-x / Math.SQRT2);
}

export interface BaselineBlockWeights {
  query: Mat;
  queryBias: Float64Array;
  key: Mat;
  keyBias: Float64Array;
  value: Mat;
  valueBias: Float64Array;
  output: Mat;
  outputBias: Float64Array;
  attentionNormWeight: Float64Array;
  attentionNormBias: Float64Array;
  intermediate: Mat;
  intermediateBias: Float64Array;
  ffnOutput: Mat;
  ffnOutputBias: Float64Array;
  outputNormWeight: Float64Array;
  outputNormBias: Float64Array;
}

const linear = (x: Mat, w: Mat, b: ArrayLike<number>): Mat => addBias(matmulT(x, w), b);

/** One BERT/RoBERTa encoder layer (post-LN, biases, GELU, no RoPE). */
export function baselineBlock(x: Mat, w: BaselineBlockWeights, opts: { numHeads: number; eps: number; keyMask?: boolean[] }): Mat {
  const q = linear(x, w.query, w.queryBias);
  const k = linear(x, w.key, w.keyBias);
  const v = linear(x, w.value, w.valueBias);
  const a = linear(attention(q, k, v, opts.numHeads, opts.keyMask), w.output, w.outputBias);
  const x1 = layerNorm(add(x, a), w.attentionNormWeight, w.attentionNormBias, opts.eps);
  const f = linear(mapMat(linear(x1, w.intermediate, w.intermediateBias), gelu), w.ffnOutput, w.ffnOutputBias);
  return layerNorm(add(x1, f), w.outputNormWeight, w.outputNormBias, opts.eps);
}

// ---------------------------------------------------------------------------------------------
// Test helpers

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths ${a.length} and ${b.length} differ`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return NaN; // a NaN must never look like agreement
    if (d > m) m = d;
  }
  return m;
}

/** mulberry32: tiny deterministic PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Matrix with entries uniform in [-scale, scale]. */
export function randomMat(rows: number, cols: number, rand: () => number, scale = 1): Mat {
  const m = mat(rows, cols);
  for (let i = 0; i < m.data.length; i++) m.data[i] = (2 * rand() - 1) * scale;
  return m;
}
