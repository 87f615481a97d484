// NumPy's .npy format (version 1.0) for a float32 matrix, so that embeddings load with
// `numpy.load(path)`: the magic "\x93NUMPY", the version, a little-endian uint16 header
// length, then a Python dict literal padded with spaces to end in '\n' at a multiple of
// 64 bytes, then the values in C (row-major) order.
// Spec: numpy.org/doc/stable/reference/generated/numpy.lib.format.html

const MAGIC = Buffer.from([0x93, ...Buffer.from('NUMPY', 'latin1')]);
const ALIGNMENT = 64;

/** The header bytes of a (rows, columns) little-endian float32 array. */
export function npyHeader(rows: number, columns: number): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${columns}), }`;
  const unpadded = MAGIC.length + 2 + 2 + dict.length + 1; // + '\n'
  const padded = Math.ceil(unpadded / ALIGNMENT) * ALIGNMENT;
  const text = dict + ' '.repeat(padded - unpadded) + '\n';
  const header = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(header);
  header[6] = 1; // major version
  header[7] = 0; // minor version
  header.writeUInt16LE(text.length, 8);
  return Buffer.concat([header, Buffer.from(text, 'latin1')]);
}

/** The whole .npy file as chunks: the header, then each row's bytes (all rows of `columns` values). */
export function* npyChunks(rows: readonly Float32Array[], columns: number): Generator<Uint8Array> {
  yield npyHeader(rows.length, columns);
  // Float32Array's bytes are the platform's order; every platform Node supports is little-endian.
  for (const row of rows) yield new Uint8Array(row.buffer, row.byteOffset, row.byteLength);
}
