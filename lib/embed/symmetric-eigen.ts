// Eigendecomposition of a real symmetric matrix (a covariance), in float64: the
// cyclic Jacobi method. Each rotation zeroes one off-diagonal pair; sweeps repeat
// until the off-diagonal mass is negligible. Slower than Householder + QL for large
// n (O(n³) per sweep, ~6–10 sweeps: about a second at n = 256, tens of seconds at
// n = 1024) but short, and accurate to the last bits for small eigenvalues, which
// whitening divides by. No npm package kept up for this was at hand.

export interface SymmetricEigen {
  /** Eigenvalues, largest first. */
  values: Float64Array;
  /** n×n row-major; column j is the unit eigenvector of values[j]. */
  vectors: Float64Array;
}

const MAX_SWEEPS = 100;

/** `matrix`: n×n row-major and symmetric (only its symmetry is assumed, not checked). */
export function symmetricEigen(matrix: ArrayLike<number>, n: number): SymmetricEigen {
  if (matrix.length !== n * n) throw new RangeError(`symmetricEigen: expected ${n}×${n} = ${n * n} values, got ${matrix.length}`);
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;

  let total = 0;
  for (const x of a) total += x * x;
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        // The rotation angle that zeroes a[p][q] (the smaller root, for stability).
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        rotate(a, n, p, q, c, s);
        rotateColumns(v, n, p, q, c, s);
      }
    }
  }

  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j * n + j]! - a[i * n + i]!);
  const values = Float64Array.from(order, (i) => a[i * n + i]!);
  const vectors = new Float64Array(n * n);
  order.forEach((from, to) => {
    for (let r = 0; r < n; r++) vectors[r * n + to] = v[r * n + from]!;
  });
  return { values, vectors };
}

/** A ← Jᵀ A J for the rotation J in the (p, q) plane. */
function rotate(a: Float64Array, n: number, p: number, q: number, c: number, s: number): void {
  rotateColumns(a, n, p, q, c, s);
  for (let k = 0; k < n; k++) {
    const apk = a[p * n + k]!;
    const aqk = a[q * n + k]!;
    a[p * n + k] = c * apk - s * aqk;
    a[q * n + k] = s * apk + c * aqk;
  }
}

/** M ← M J: columns p and q rotated. */
function rotateColumns(m: Float64Array, n: number, p: number, q: number, c: number, s: number): void {
  for (let k = 0; k < n; k++) {
    const mkp = m[k * n + p]!;
    const mkq = m[k * n + q]!;
    m[k * n + p] = c * mkp - s * mkq;
    m[k * n + q] = s * mkp + c * mkq;
  }
}
