// Reading data files (the pretraining corpus, task files, the files a vocab is
// built from), shared by every reader so that they all behave alike:
//
//   - checkDataFile: a data file must be a readable regular file. A directory,
//     /dev/zero or a FIFO (`<(cat train.json)`, a named pipe nobody writes to)
//     is refused with a message naming it, instead of EISDIR, an endless read
//     or a hang: some files are read more than once (vocab, labels, examples).
//   - scanLines: the file streamed in 1 MiB chunks and split on '\n' at the
//     Buffer level, with exact byte offsets and line numbers, so that no file
//     is ever read whole into one string (V8 strings stop near 512 MiB).
//   - textLines: the same lines decoded, invalid UTF-8 flagged (not dropped),
//     handed over a chunk's worth at a time (an await per line would cost
//     more than the reading).

import { isUtf8 } from 'node:buffer';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';

/** A data file that cannot be read; `reason` is what follows the path ("is a directory, …"). */
export class DataFileError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path} ${reason}`);
    this.name = 'DataFileError';
  }
}

const CHUNK_BYTES = 1 << 20;
/** Longer lines are dropped and reported, so one pathological line cannot take unbounded memory. */
export const MAX_LINE_BYTES = 64 << 20;
/** The reason given for a line whose bytes are not UTF-8. */
export const INVALID_UTF8 = 'invalid UTF-8';

/** What a path that is not a regular file is, in words. */
function kindOf(stats: fs.Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO (a named pipe, or <(…) process substitution)';
  if (stats.isCharacterDevice()) return 'a character device (like /dev/zero)';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  return 'not a regular file';
}

function accessReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'does not exist';
  if (code === 'EACCES' || code === 'EPERM') return `is not readable (${code})`;
  return `cannot be read (${(error as Error)?.message ?? String(error)})`;
}

/**
 * Checks that `path` is a readable regular file (without opening it, so a FIFO
 * cannot block); throws DataFileError naming the path otherwise. Returns its stats.
 */
export async function checkDataFile(path: string): Promise<fs.Stats> {
  let stats: fs.Stats;
  try {
    stats = await fsp.stat(path);
  } catch (error) {
    throw new DataFileError(path, accessReason(error));
  }
  if (!stats.isFile()) {
    throw new DataFileError(
      path,
      `is ${kindOf(stats)}, not a regular file (data is read from files, some of them more than once: save it to a file first)`,
    );
  }
  try {
    await fsp.access(path, fs.constants.R_OK);
  } catch (error) {
    throw new DataFileError(path, accessReason(error));
  }
  return stats;
}

/** Where scanLines hands each line. */
export interface LineSink {
  /**
   * One complete line: bytes buf[s, e) (its '\n' and a '\r' before it
   * excluded) at file offsets [start, end) (end past the '\n'); `nextLine` is
   * the number of the line after it.
   */
  line(buf: Buffer, s: number, e: number, lineNo: number, start: number, end: number, nextLine: number): void;
  /** A line longer than maxLineBytes, dropped unread. */
  tooLong(lineNo: number, start: number, end: number, nextLine: number): void;
  /** Called after the last line, before the final yield. */
  end?(): void;
}

export interface ScanOptions {
  /** Byte offset to start at (default 0), the start of line `startLine` (default 1). */
  start?: number;
  startLine?: number;
  /** Stop before this byte offset (default: the end of the file). */
  until?: number;
  maxLineBytes?: number;
}

/**
 * Streams `path`, handing each line to `sink`. After each chunk it yields the
 * file offset up to which every line has been handed over (the start of the
 * pending line), and once more at the end (the offset reached), so a caller
 * can flush what the sink collected. A UTF-8 byte-order mark at offset 0 is
 * skipped. Read errors throw DataFileError.
 */
export async function* scanLines(path: string, sink: LineSink, options: ScanOptions = {}): AsyncGenerator<number> {
  const start = options.start ?? 0;
  const { until } = options;
  const maxLineBytes = options.maxLineBytes ?? MAX_LINE_BYTES;
  if (until !== undefined && until <= start) return;
  const stream = fs.createReadStream(path, { start, end: until === undefined ? undefined : until - 1, highWaterMark: CHUNK_BYTES });
  const line = (buf: Buffer, s: number, e: number, lineNo: number, from: number, to: number, nextLine: number) => {
    if (e > s && buf[e - 1] === 13) e--;
    sink.line(buf, s, e, lineNo, from, to, nextLine);
  };
  let base = start; // file offset of chunk[0]
  let lineStart = start; // file offset where the pending line starts
  let lineNo = options.startLine ?? 1;
  let bomCheck = start === 0;
  // Pieces of a line that spans chunks (dropped once it gets too long).
  let parts: Buffer[] = [];
  let partsBytes = 0;
  let overflow = false;
  try {
    try {
      for await (const chunkAny of stream) {
        const chunk = chunkAny as Buffer;
        let i = 0;
        if (bomCheck) {
          bomCheck = false;
          if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) {
            i = 3;
            lineStart = 3;
          }
        }
        for (;;) {
          const nl = chunk.indexOf(10, i);
          if (nl < 0) {
            if (i < chunk.length && !overflow) {
              partsBytes += chunk.length - i;
              if (partsBytes > maxLineBytes) {
                overflow = true;
                parts = [];
              } else {
                // Copy: a slice would pin the whole 1 MiB chunk.
                parts.push(Buffer.from(chunk.subarray(i)));
              }
            }
            break;
          }
          const lineEnd = base + nl + 1;
          if (overflow) {
            sink.tooLong(lineNo, lineStart, lineEnd, lineNo + 1);
          } else if (parts.length > 0) {
            parts.push(chunk.subarray(i, nl));
            const whole = Buffer.concat(parts);
            line(whole, 0, whole.length, lineNo, lineStart, lineEnd, lineNo + 1);
          } else {
            line(chunk, i, nl, lineNo, lineStart, lineEnd, lineNo + 1);
          }
          parts = [];
          partsBytes = 0;
          overflow = false;
          lineNo++;
          lineStart = lineEnd;
          i = nl + 1;
        }
        base += chunk.length;
        yield lineStart;
      }
    } catch (error) {
      if (typeof (error as NodeJS.ErrnoException)?.code !== 'string') throw error;
      throw new DataFileError(path, `cannot be read (${(error as Error).message})`);
    }
    // A last line without '\n'.
    if (base > lineStart) {
      if (overflow) {
        sink.tooLong(lineNo, lineStart, base, lineNo);
      } else {
        const whole = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        line(whole, 0, whole.length, lineNo, lineStart, base, lineNo);
      }
    }
    sink.end?.();
    yield base;
  } finally {
    stream.destroy();
  }
}

/** One decoded line of a file. */
export interface TextLine {
  /** 1-based line number. */
  line: number;
  /** The line ('\n' and '\r' excluded); '' when it was too long. */
  text: string;
  /** Its bytes were not all UTF-8: the bad ones read as U+FFFD. */
  invalidUtf8: boolean;
  /** Longer than MAX_LINE_BYTES: dropped unread. */
  tooLong: boolean;
}

/**
 * Every line of a data file, blank ones included, streamed (see scanLines) in
 * batches: the lines completed by each chunk read. Checks first that the file
 * is a readable regular file (checkDataFile).
 */
export async function* textLines(path: string): AsyncGenerator<TextLine[]> {
  await checkDataFile(path);
  let pending: TextLine[] = [];
  // Consecutive lines of one chunk are decoded together and then split: one
  // decode per chunk instead of one per line (twice as fast on short lines).
  let run: { buf: Buffer; s: number; e: number; lines: number[]; starts: number[] } | null = null;
  const decodeRun = () => {
    if (run === null) return;
    const { buf, s, e, lines, starts } = run;
    const valid = isUtf8(buf.subarray(s, e)); // the bad bytes of an invalid run read as U+FFFD
    const texts = buf.toString('utf8', s, e).split('\n');
    // '\n' is never part of a multi-byte sequence, so the split matches the lines even with bad bytes.
    for (let k = 0; k < lines.length; k++) {
      const last = k === lines.length - 1;
      const text = texts[k]!;
      const end = last ? e : starts[k + 1]! - 1;
      pending.push({
        line: lines[k]!,
        // scanLines left out a '\r' before each '\n'; inside the run it is back (the last line ends at e).
        text: !last && text.endsWith('\r') ? text.slice(0, -1) : text,
        invalidUtf8: !valid && !isUtf8(buf.subarray(starts[k], end)),
        tooLong: false,
      });
    }
    run = null;
  };
  const sink: LineSink = {
    line(buf, s, e, line) {
      // A line continues the run when it starts just past the run's '\n' (or '\r\n') in the same buffer.
      const continues = run !== null && run.buf === buf && (s === run.e + 1 || (s === run.e + 2 && buf[run.e] === 13));
      if (!continues) decodeRun();
      if (run === null) run = { buf, s, e, lines: [], starts: [] };
      run.e = e;
      run.lines.push(line);
      run.starts.push(s);
    },
    tooLong(line) {
      decodeRun();
      pending.push({ line, text: '', invalidUtf8: false, tooLong: true });
    },
    end: decodeRun,
  };
  for await (const _ of scanLines(path, sink)) {
    decodeRun();
    if (pending.length === 0) continue;
    yield pending;
    pending = [];
  }
}
