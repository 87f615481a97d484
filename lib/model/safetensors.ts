/**
 * A small, dependency-free reader and writer for the Hugging Face
 * "safetensors" file format.
 *
 * File layout (all integers little-endian):
 *
 *   [ 8 bytes ]  u64 N: length of the JSON header in bytes
 *   [ N bytes ]  UTF-8 JSON object, possibly padded with trailing spaces:
 *                  {
 *                    "<tensor name>": {
 *                      "dtype": "F32",
 *                      "shape": [2, 3],
 *                      "data_offsets": [begin, end]   // relative to the data section
 *                    },
 *                    ...,
 *                    "__metadata__": { "<key>": "<string value>" }   // optional
 *                  }
 *   [ rest   ]  the data section: raw little-endian tensor bytes
 *
 * Reading never copies tensor data: every returned `data` Buffer is a view
 * (subarray) into the buffer that holds the whole file. Writing produces a
 * list of chunks (header, then each tensor) so that multi-gigabyte checkpoints
 * never have to be concatenated into one giant Buffer.
 *
 * Every problem with a file's contents is reported as a SafetensorsError
 * whose message names the file and, where relevant, the tensor.
 */

import * as fs from 'node:fs/promises';

import { writeFileAtomic } from '../util/atomic-file.js';

// ---------------------------------------------------------------------------
// Types and constants
// ---------------------------------------------------------------------------

export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U8'
  | 'BOOL';

/** Size in bytes of one element of each supported dtype. */
export const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Raw little-endian bytes: a view into the file buffer, length = numel × DTYPE_BYTES[dtype]. */
  data: Buffer;
}

export interface SafetensorsFile {
  /** Tensors in the order their bytes appear in the data section. */
  tensors: Map<string, SafetensorsEntry>;
  /** The optional `__metadata__` object (empty if the file has none). */
  metadata: Record<string, string>;
}

/** A tensor as handed to the writer. */
export interface SafetensorsTensorInput {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: Buffer | Uint8Array;
}

/** Every problem found while parsing or serializing is one of these. */
export class SafetensorsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SafetensorsError';
  }
}

/** The reserved header key that holds free-form string metadata. */
const METADATA_KEY = '__metadata__';

/** What Hugging Face's own writers put in `__metadata__`. */
const DEFAULT_METADATA: Record<string, string> = { format: 'pt' };

/** Used in messages when parseSafetensors is given bytes but no file name. */
const DEFAULT_SOURCE = '<buffer>';

// ---------------------------------------------------------------------------
// Small helpers shared by reader and writer
// ---------------------------------------------------------------------------

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isKnownDtype(value: unknown): value is SafetensorsDtype {
  // Object.hasOwn (not `in`) so that names like "toString" are not accepted.
  return typeof value === 'string' && Object.hasOwn(DTYPE_BYTES, value);
}

const SUPPORTED_DTYPES = Object.keys(DTYPE_BYTES).join(', ');

/**
 * Checks a shape and returns its element count, or returns a description of
 * what is wrong with it. The count must stay a safe integer so the byte
 * arithmetic below is exact.
 */
function shapeNumel(shape: unknown): number | string {
  if (!Array.isArray(shape)) return `"shape" must be an array of integers, got ${JSON.stringify(shape)}`;
  let numel = 1;
  for (const dim of shape) {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      return `shape ${JSON.stringify(shape)} has an invalid dimension ${JSON.stringify(dim)} (dimensions must be non-negative integers)`;
    }
    numel *= dim;
    if (!Number.isSafeInteger(numel)) return `shape ${JSON.stringify(shape)} has too many elements`;
  }
  return numel; // an empty shape [] is a 0-d scalar with one element
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

// `fatal: true` makes invalid UTF-8 an error instead of silently becoming U+FFFD.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses a complete safetensors file held in memory.
 *
 * @param bytes  the whole file
 * @param source the file path, used only to make error messages useful
 */
export function parseSafetensors(bytes: Buffer, source: string = DEFAULT_SOURCE): SafetensorsFile {
  const fail = (problem: string): never => {
    throw new SafetensorsError(`${source}: ${problem}`);
  };

  // 1. The 8-byte header length.
  if (bytes.length < 8) {
    fail(`not a safetensors file: it is only ${bytes.length} bytes long, less than the 8-byte header length prefix`);
  }
  const headerLength = bytes.readBigUInt64LE(0);
  const bytesAfterPrefix = bytes.length - 8;
  // Compare as bigint: a garbage prefix can be far larger than 2^53.
  if (headerLength > BigInt(bytesAfterPrefix)) {
    fail(`truncated: header says ${headerLength} bytes but file has ${bytesAfterPrefix} bytes after the 8-byte prefix`);
  }
  const headerEnd = 8 + Number(headerLength);

  // 2. The JSON header.
  let header: unknown;
  try {
    header = JSON.parse(utf8Decoder.decode(bytes.subarray(8, headerEnd)));
  } catch (err) {
    fail(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(header)) {
    fail(`header must be a JSON object, got ${Array.isArray(header) ? 'an array' : JSON.stringify(header)}`);
  }
  const headerObject = header as Record<string, unknown>;

  // 3. Each entry. Offsets are relative to the data section, which is
  //    everything after the header.
  const data = bytes.subarray(headerEnd);
  let metadata: Record<string, string> = {};
  const entries: Array<{ entry: SafetensorsEntry; begin: number; end: number }> = [];

  for (const [name, raw] of Object.entries(headerObject)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(raw, fail);
      continue;
    }
    const tensorFail = (problem: string): never => fail(`tensor "${name}": ${problem}`);

    if (!isPlainObject(raw)) tensorFail(`header entry must be an object, got ${JSON.stringify(raw)}`);
    const info = raw as Record<string, unknown>;

    for (const field of ['dtype', 'shape', 'data_offsets']) {
      if (!Object.hasOwn(info, field)) tensorFail(`header entry is missing "${field}"`);
    }

    const dtype = info.dtype;
    if (typeof dtype !== 'string') tensorFail(`"dtype" must be a string, got ${JSON.stringify(dtype)}`);
    if (!isKnownDtype(dtype)) tensorFail(`unknown dtype "${dtype}" (supported: ${SUPPORTED_DTYPES})`);
    const knownDtype = dtype as SafetensorsDtype;

    const numel = shapeNumel(info.shape);
    if (typeof numel === 'string') tensorFail(numel);
    const shape = info.shape as number[];

    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
    ) {
      tensorFail(`"data_offsets" must be [begin, end] with non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) tensorFail(`data_offsets [${begin}, ${end}] are out of order (begin > end)`);
    if (end > data.length) {
      fail(
        `tensor "${name}" needs bytes [${begin},${end}) of the data section but the file has only ${data.length}: the file is truncated`,
      );
    }

    const expectedBytes = (numel as number) * DTYPE_BYTES[knownDtype];
    if (end - begin !== expectedBytes) {
      tensorFail(
        `data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape ${JSON.stringify(shape)} ` +
          `of ${knownDtype} needs ${numel} × ${DTYPE_BYTES[knownDtype]} = ${expectedBytes} bytes`,
      );
    }

    entries.push({
      entry: { name, dtype: knownDtype, shape: [...shape], data: data.subarray(begin, end) },
      begin,
      end,
    });
  }

  // 4. No two tensors may share bytes. Sorting by position also gives the
  //    Map a meaningful order: the order the writer laid the tensors out in.
  //    (JSON object order is not reliable for this: JavaScript moves
  //    integer-like keys such as "0" to the front.) Gaps between tensors are
  //    tolerated; they are harmless for reading.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let previous: { name: string; end: number } | undefined;
  for (const { entry, begin, end } of entries) {
    if (begin === end) continue; // empty tensors occupy no bytes and cannot overlap
    if (previous && begin < previous.end) {
      fail(
        `tensor "${entry.name}" (bytes [${begin},${end})) overlaps tensor "${previous.name}" ` +
          `(which ends at byte ${previous.end}) in the data section`,
      );
    }
    previous = { name: entry.name, end };
  }

  return { tensors: new Map(entries.map(({ entry }) => [entry.name, entry])), metadata };
}

/** `__metadata__` must map strings to strings (that is what the format defines). */
function parseMetadata(raw: unknown, fail: (problem: string) => never): Record<string, string> {
  if (!isPlainObject(raw)) fail(`"${METADATA_KEY}" must be an object of strings, got ${JSON.stringify(raw)}`);
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof value !== 'string') {
      fail(`"${METADATA_KEY}" value for key "${key}" must be a string, got ${JSON.stringify(value)}`);
    }
    // defineProperty so that a key named "__proto__" stays an ordinary key.
    Object.defineProperty(metadata, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return metadata;
}

/**
 * Reads and parses a safetensors file. The whole file is read into memory
 * with fs.promises.readFile (Node allows files up to ~2 GB this way); the
 * tensors' `data` Buffers are views into that one buffer.
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(path);
  } catch (err) {
    throw new SafetensorsError(`${path}: cannot read file (${(err as Error).message})`, { cause: err });
  }
  return parseSafetensors(bytes, path);
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/**
 * Serializes tensors into safetensors format, returned as chunks: the
 * header (with its 8-byte length prefix) followed by each tensor's bytes.
 * Tensors are laid out contiguously in the given order and the header keys
 * keep that order. Writing the chunks one after another gives the file.
 *
 * @param metadata stored as `__metadata__`; defaults to {"format":"pt"} like
 *                 Hugging Face's writers. Pass {} to omit it.
 */
export function serializeSafetensors(
  tensors: SafetensorsTensorInput[],
  metadata: Record<string, string> = DEFAULT_METADATA,
): Buffer[] {
  const fail = (problem: string): never => {
    throw new SafetensorsError(`cannot serialize safetensors: ${problem}`);
  };

  // The header is assembled as text, one key at a time, rather than via
  // JSON.stringify of one object: that keeps the caller's order exactly
  // (objects reorder integer-like keys) and treats a name like "__proto__"
  // as an ordinary string.
  const headerParts: string[] = [];
  const dataChunks: Buffer[] = [];
  const seen = new Set<string>();
  let offset = 0;

  const metadataEntries = Object.entries(metadata);
  if (metadataEntries.length > 0) {
    for (const [key, value] of metadataEntries) {
      if (typeof value !== 'string') fail(`metadata value for key "${key}" must be a string`);
    }
    headerParts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }

  for (const { name, dtype, shape, data } of tensors) {
    const tensorFail = (problem: string): never => fail(`tensor "${name}": ${problem}`);
    if (typeof name !== 'string') fail(`tensor name must be a string, got ${JSON.stringify(name)}`);
    if (name === METADATA_KEY) tensorFail(`the name "${METADATA_KEY}" is reserved for metadata`);
    if (seen.has(name)) tensorFail('duplicate tensor name');
    seen.add(name);
    if (!isKnownDtype(dtype)) tensorFail(`unknown dtype "${dtype}" (supported: ${SUPPORTED_DTYPES})`);
    const numel = shapeNumel(shape);
    if (typeof numel === 'string') tensorFail(numel);
    if (!(data instanceof Uint8Array)) tensorFail('data must be a Buffer or Uint8Array');
    const expectedBytes = (numel as number) * DTYPE_BYTES[dtype];
    if (data.byteLength !== expectedBytes) {
      tensorFail(
        `data has ${data.byteLength} bytes but shape ${JSON.stringify(shape)} of ${dtype} ` +
          `needs ${numel} × ${DTYPE_BYTES[dtype]} = ${expectedBytes} bytes`,
      );
    }

    const entry = { dtype, shape, data_offsets: [offset, offset + expectedBytes] };
    headerParts.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`);
    // Wrap without copying: Buffer.from(arrayBuffer, offset, length) is a view.
    dataChunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    offset += expectedBytes;
  }

  // Pad the JSON with spaces so that the data section starts at a multiple
  // of 8 bytes (8-byte prefix + header), which is what the reference writer
  // does and what lets readers map aligned arrays directly.
  const json = Buffer.from(`{${headerParts.join(',')}}`, 'utf8');
  const paddedLength = Math.ceil(json.length / 8) * 8;
  const header = Buffer.alloc(8 + paddedLength, 0x20 /* space */);
  header.writeBigUInt64LE(BigInt(paddedLength), 0);
  json.copy(header, 8);

  return [header, ...dataChunks];
}

/** Serializes tensors and writes them to `path` atomically (see lib/util/atomic-file.ts). */
export async function writeSafetensorsAtomic(
  path: string,
  tensors: SafetensorsTensorInput[],
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
