/**
 * Streaming corpus reader for MLM pre-training.
 *
 * - Any file size, bounded memory: files are streamed line by line with
 *   exact byte offsets and line numbers (scanLines, shared with the task
 *   loader), so every training document carries the exact position at which
 *   reading resumes after it.
 * - Bad input never crashes a run: invalid UTF-8, invalid JSON, a missing or
 *   non-string JSONL field, or an absurdly long line is reported as a
 *   {@link CorpusProblem} (file:line) and skipped.
 * - JSONL text from several fields ('sentence,sentence1,sentence2,content'):
 *   the fields a record has, joined by a line break in the order given, are
 *   one document. A pair (sentence1, sentence2) thus stays one document, as
 *   the pair task sees it as one example, and a document is still one line, so
 *   resume positions and the held-out split work as for one field. Fields that
 *   are absent (or not strings) are passed over; a record with none of them is
 *   a problem.
 * - A deterministic held-out split: a document is held out when a hash of
 *   (file path relative to its corpus root, start line) falls below
 *   `evalFraction`, up to the first `evalMaxDocuments` such documents in
 *   corpus order; hashed documents past that cap go to training, so the two
 *   sets are disjoint and together cover the corpus.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

import { fieldNames } from '../util/value-kinds.js';
import { checkDataFile, DataFileError, INVALID_UTF8, MAX_LINE_BYTES, scanLines, type LineSink } from './data-file.js';

export type CorpusFormat = 'text' | 'jsonl';

export interface CorpusOptions {
  /** Files or directories. Directories are walked recursively for files ending
   * .txt .text .jsonl .json .ndjson (hidden entries skipped), sorted by path. */
  paths: string[];
  /** 'auto' (default): .jsonl/.ndjson/.json → jsonl, anything else → text. */
  format?: CorpusFormat | 'auto';
  /** JSONL: the text field (default 'text'), or several separated by commas
   * (see above); a dotted path like 'data.text' is allowed. */
  field?: string;
  /** Text: one document per line (default) or paragraphs separated by blank lines. */
  documents?: 'line' | 'blank-line';
  /** Share of documents held out for evaluation (default 0.01). */
  evalFraction?: number;
  /** Cap on held-out documents (default 2000). */
  evalMaxDocuments?: number;
}

export interface Document {
  text: string;
  file: string;
  /** 1-based line where the document starts. */
  line: number;
}

export interface CorpusPosition {
  epoch: number;
  /** Index into `Corpus.files`. */
  file: number;
  /** Byte offset of the next unread byte. */
  offset: number;
  /** 1-based line number of that byte. */
  line: number;
}

export interface CorpusProblem {
  file: string;
  line: number;
  reason: string;
}

export class CorpusError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorpusError';
  }
}

const CORPUS_EXTENSIONS = new Set(['.txt', '.text', '.jsonl', '.json', '.ndjson']);
const JSONL_EXTENSIONS = new Set(['.jsonl', '.ndjson', '.json']);
/** Longer lines (or blank-line paragraphs) are skipped and reported, so one
 * pathological line cannot take unbounded memory. */
const MAX_DOCUMENT_BYTES = MAX_LINE_BYTES;
const MAX_KEPT_PROBLEMS = 50;

interface FileEntry {
  /** Absolute path, as listed in `Corpus.files`. */
  path: string;
  /** Path relative to its corpus root ('/' separators): the directory given in
   * `paths`, or the file's own directory when the file was given directly. */
  rel: string;
  format: CorpusFormat;
  /** Hash of `rel`, mixed with the line number for the held-out split. */
  hash: number;
}

/** Documents as scanned (before the held-out decision): parallel arrays,
 * reused from chunk to chunk, to spare allocations per document. A consumer
 * must be done with a batch before it asks the scan for the next one. */
class Batch {
  length = 0;
  texts: string[] = [];
  /** Line where each document starts. */
  lines = new Float64Array(1024);
  /** Byte offset where each document's first line starts. */
  starts = new Float64Array(1024);
  /** Byte offset just after each document's last line (its '\n' included). */
  ends = new Float64Array(1024);
  /** Line number at `ends[i]`. */
  endLines = new Float64Array(1024);

  push(text: string, line: number, start: number, end: number, endLine: number): void {
    const n = this.length;
    if (n === this.lines.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.lines = grow(this.lines);
      this.starts = grow(this.starts);
      this.ends = grow(this.ends);
      this.endLines = grow(this.endLines);
    }
    this.texts[n] = text;
    this.lines[n] = line;
    this.starts[n] = start;
    this.ends[n] = end;
    this.endLines[n] = endLine;
    this.length = n + 1;
  }

  /** Empties the batch (dropping the strings so they can be collected). */
  clear(): void {
    this.texts = [];
    this.length = 0;
  }
}

/** Byte range of a file whose problems have already been recorded. */
interface Interval {
  file: number;
  start: number;
  end: number;
}

type Cutoff = null | 'all' | { file: number; offset: number };

export class Corpus {
  readonly files: string[];
  readonly problems: CorpusProblem[] = [];

  readonly #entries: FileEntry[];
  /** The JSONL fields holding the text, each with its dotted path split. */
  readonly #fields: JsonField[];
  readonly #paragraphs: boolean;
  readonly #evalFraction: number;
  readonly #evalMax: number;
  #problemCount = 0;
  /** Where the held-out set ends (see #isHeldOut); learnt lazily by scanning. */
  #cutoff: Cutoff = null;
  /** Scanned ranges per file (merged) and scans in progress: a problem inside
   * one of them has been counted already (e.g. in an earlier epoch). */
  readonly #done: Interval[][];
  readonly #live = new Set<Interval>();
  #lastPosition: CorpusPosition = { epoch: 0, file: 0, offset: 0, line: 1 };

  private constructor(entries: FileEntry[], options: CorpusOptions) {
    this.#entries = entries;
    this.files = entries.map((e) => e.path);
    this.#fields = fieldNames(options.field ?? 'text')!.map((name) => ({ name, path: name.split('.') }));
    this.#paragraphs = (options.documents ?? 'line') === 'blank-line';
    this.#evalFraction = options.evalFraction ?? 0.01;
    this.#evalMax = options.evalMaxDocuments ?? 2000;
    this.#done = entries.map(() => []);
  }

  /** Resolves `options.paths` into the file list; throws CorpusError naming the
   * offending path when one does not exist, cannot be read, or is a directory
   * without corpus files. */
  static async open(options: CorpusOptions): Promise<Corpus> {
    if (options === null || typeof options !== 'object') throw new CorpusError('Corpus.open: options object required');
    const { paths } = options;
    if (!Array.isArray(paths) || paths.length === 0) throw new CorpusError('Corpus.open: no paths given');
    const format = options.format ?? 'auto';
    if (format !== 'auto' && format !== 'text' && format !== 'jsonl') {
      throw new CorpusError(`Corpus.open: unknown format ${JSON.stringify(format)} (expected 'text', 'jsonl' or 'auto')`);
    }
    const documents = options.documents ?? 'line';
    if (documents !== 'line' && documents !== 'blank-line') {
      throw new CorpusError(`Corpus.open: unknown documents mode ${JSON.stringify(documents)} (expected 'line' or 'blank-line')`);
    }
    const field = options.field ?? 'text';
    if (typeof field !== 'string' || fieldNames(field) === null) {
      throw new CorpusError(`Corpus.open: invalid field ${JSON.stringify(field)}`);
    }
    const evalFraction = options.evalFraction ?? 0.01;
    if (typeof evalFraction !== 'number' || !(evalFraction >= 0 && evalFraction <= 1)) {
      throw new CorpusError(`Corpus.open: evalFraction must be a number in [0, 1], got ${String(evalFraction)}`);
    }
    const evalMax = options.evalMaxDocuments ?? 2000;
    if (!Number.isSafeInteger(evalMax) || evalMax < 0) {
      throw new CorpusError(`Corpus.open: evalMaxDocuments must be a non-negative integer, got ${String(evalMax)}`);
    }

    const entries: FileEntry[] = [];
    const seen = new Set<string>();
    for (const p of paths) {
      if (typeof p !== 'string' || p === '') throw new CorpusError(`Corpus.open: invalid path ${JSON.stringify(p)}`);
      const abs = path.resolve(p);
      let st: fs.Stats;
      try {
        st = await fsp.stat(abs);
      } catch (e) {
        throw pathError(p, e);
      }
      let found: { path: string; rel: string }[];
      if (st.isDirectory()) {
        found = await listCorpusFiles(p, abs);
        if (found.length === 0) {
          throw new CorpusError(
            `corpus directory contains no corpus files (${[...CORPUS_EXTENSIONS].join(' ')}): ${p}`,
          );
        }
      } else {
        found = [{ path: abs, rel: path.basename(abs) }];
      }
      for (const f of found) {
        if (seen.has(f.path)) continue;
        seen.add(f.path);
        try {
          await checkDataFile(f.path);
        } catch (e) {
          if (e instanceof DataFileError) throw new CorpusError(`corpus path ${e.reason}: ${f.path === abs ? p : f.path}`);
          throw e;
        }
        const ext = path.extname(f.path).toLowerCase();
        entries.push({
          path: f.path,
          rel: f.rel,
          format: format === 'auto' ? (JSONL_EXTENSIONS.has(ext) ? 'jsonl' : 'text') : format,
          hash: stringHash(f.rel),
        });
      }
    }
    return new Corpus(entries, options);
  }

  get problemCount(): number {
    return this.#problemCount;
  }

  /** Position after the most recent training document yielded by `train()`
   * (or where the latest `train()` started, before it yields anything). */
  position(): CorpusPosition {
    return { ...this.#lastPosition };
  }

  /**
   * Training documents (held-out ones skipped), forever: epoch after epoch,
   * starting at `from` (default the very start). Each carries the position
   * just after it; `train(thatPosition)` continues exactly with the next one.
   */
  async *train(from?: CorpusPosition): AsyncGenerator<Document & { position: CorpusPosition }> {
    let pos = from === undefined ? { epoch: 0, file: 0, offset: 0, line: 1 } : await this.#checkPosition(from);
    this.#lastPosition = { ...pos };
    // While the held-out cutoff is unknown, held-out documents are counted in
    // corpus order; a resumed epoch first counts those before its start.
    const state = { count: 0 };
    if (!(pos.file === 0 && pos.offset === 0)) state.count = await this.#countHeldOutBefore(pos);
    for (;;) {
      const fullPass = pos.file === 0 && pos.offset === 0;
      let yielded = 0;
      for (let f = pos.file; f < this.#entries.length; f++) {
        const first = f === pos.file;
        const file = this.files[f];
        for await (const b of this.#scan(f, first ? pos.offset : 0, first ? pos.line : 1)) {
          for (let i = 0; i < b.length; i++) {
            if (this.#isHeldOut(f, b.lines[i], b.starts[i], state)) continue;
            const position = { epoch: pos.epoch, file: f, offset: b.ends[i], line: b.endLines[i] };
            this.#lastPosition = position; // copied by position()
            yielded++;
            yield { text: b.texts[i], file, line: b.lines[i], position };
          }
        }
      }
      // The whole epoch has now been seen, so fewer than evalMaxDocuments
      // documents hash into the held-out set: all of them are held out.
      if (this.#cutoff === null) this.#cutoff = 'all';
      if (yielded === 0 && fullPass) throw this.#emptyError();
      pos = { epoch: pos.epoch + 1, file: 0, offset: 0, line: 1 };
      state.count = 0;
    }
  }

  /** The held-out documents: one pass, in corpus order, up to evalMaxDocuments. */
  async *heldOut(): AsyncGenerator<Document> {
    if (this.#evalFraction <= 0 || this.#evalMax <= 0) return;
    let count = 0;
    for (let f = 0; f < this.#entries.length; f++) {
      for await (const b of this.#scan(f, 0, 1)) {
        for (let i = 0; i < b.length; i++) {
          if (!this.#hashSelected(f, b.lines[i])) continue;
          count++;
          if (count === this.#evalMax && this.#cutoff === null) this.#cutoff = { file: f, offset: b.starts[i] };
          yield { text: b.texts[i], file: this.files[f], line: b.lines[i] };
          if (count >= this.#evalMax) return;
        }
      }
    }
    if (this.#cutoff === null) this.#cutoff = 'all';
  }

  // ---------------------------------------------------------------- held out

  #hashSelected(file: number, line: number): boolean {
    if (this.#evalFraction <= 0) return false;
    if (this.#evalFraction >= 1) return true;
    return lineHash(this.#entries[file].hash, line) < this.#evalFraction;
  }

  /** Held out = hash-selected and among the first evalMaxDocuments such
   * documents in corpus order (independent of where reading started). */
  #isHeldOut(file: number, line: number, start: number, state: { count: number }): boolean {
    if (this.#evalMax <= 0 || !this.#hashSelected(file, line)) return false;
    const c = this.#cutoff;
    if (c === 'all') return true;
    if (c !== null) return file < c.file || (file === c.file && start <= c.offset);
    // Cutoff unknown: this scan has seen every hash-selected document before
    // this one in the epoch (state.count of them, fewer than the cap).
    state.count++;
    if (state.count >= this.#evalMax) this.#cutoff = { file, offset: start };
    return true;
  }

  /** Counts hash-selected documents before `pos` (stopping early, with the
   * cutoff learnt, once the cap is reached). */
  async #countHeldOutBefore(pos: CorpusPosition): Promise<number> {
    if (this.#cutoff !== null || this.#evalFraction <= 0 || this.#evalMax <= 0) return 0;
    let count = 0;
    for (let f = 0; f <= pos.file && f < this.#entries.length; f++) {
      const until = f === pos.file ? pos.offset : undefined;
      if (until === 0) break;
      for await (const b of this.#scan(f, 0, 1, until)) {
        for (let i = 0; i < b.length; i++) {
          if (!this.#hashSelected(f, b.lines[i])) continue;
          count++;
          if (count >= this.#evalMax) {
            if (this.#cutoff === null) this.#cutoff = { file: f, offset: b.starts[i] };
            return count;
          }
        }
      }
    }
    return count;
  }

  // ---------------------------------------------------------------- errors

  async #checkPosition(from: CorpusPosition): Promise<CorpusPosition> {
    const bad = (why: string) =>
      new CorpusError(`train(): invalid position ${JSON.stringify(from)}: ${why}`);
    if (from === null || typeof from !== 'object') throw bad('not an object');
    const { epoch, file, offset, line } = from;
    for (const [k, v, min] of [['epoch', epoch, 0], ['file', file, 0], ['offset', offset, 0], ['line', line, 1]] as const) {
      if (!Number.isSafeInteger(v) || v < min) throw bad(`${k} must be an integer >= ${min}`);
    }
    if (file >= this.#entries.length) throw bad(`file index out of range (corpus has ${this.#entries.length} files)`);
    let size: number;
    try {
      size = (await fsp.stat(this.files[file])).size;
    } catch (e) {
      throw pathError(this.files[file], e);
    }
    if (offset > size) {
      throw bad(`offset beyond the end of ${this.files[file]} (${size} bytes): has the corpus changed?`);
    }
    return { epoch, file, offset, line };
  }

  #emptyError(): CorpusError {
    const n = this.#entries.length;
    const what = n === 1 ? this.files[0] : `${n} files (${this.files[0]} …)`;
    let msg = `corpus ${what} contains no training documents: a whole pass yielded none`;
    msg += `; ${this.#problemCount} problem${this.#problemCount === 1 ? '' : 's'}`;
    if (this.problems.length > 0) {
      const p = this.problems[0];
      msg += ` (first: ${p.file}:${p.line}: ${p.reason})`;
    }
    if (this.#evalMax > 0 && this.#evalFraction > 0) msg += `; evalFraction ${this.#evalFraction}`;
    return new CorpusError(msg);
  }

  /** Records a problem unless the line at byte `offset` was scanned before. */
  #report(file: number, line: number, offset: number, reason: string): void {
    for (const iv of this.#done[file]) if (offset >= iv.start && offset < iv.end) return;
    for (const iv of this.#live) if (iv.file === file && offset >= iv.start && offset < iv.end) return;
    this.#problemCount++;
    if (this.problems.length < MAX_KEPT_PROBLEMS) this.problems.push({ file: this.files[file], line, reason });
  }

  #finishInterval(iv: Interval): void {
    this.#live.delete(iv);
    if (iv.end <= iv.start) return;
    const list = [...this.#done[iv.file], { ...iv }].sort((a, b) => a.start - b.start);
    const merged: Interval[] = [];
    for (const x of list) {
      const last = merged[merged.length - 1];
      if (last && x.start <= last.end) last.end = Math.max(last.end, x.end);
      else merged.push({ ...x });
    }
    this.#done[iv.file] = merged;
  }

  // ---------------------------------------------------------------- scanning

  /**
   * Reads file `fileIdx` from byte `start` (line `startLine`) to its end, or to
   * byte `until` (exclusive), yielding its documents in batches (one batch
   * per chunk read). Bad lines are reported and skipped.
   */
  async *#scan(fileIdx: number, start: number, startLine: number, until?: number): AsyncGenerator<Batch> {
    const entry = this.#entries[fileIdx];
    const jsonl = entry.format === 'jsonl';
    const paragraphs = !jsonl && this.#paragraphs;
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    const fields = this.#fields;
    const out = new Batch();

    // Blank-line mode: the paragraph being collected.
    let para: { parts: string[]; line: number; start: number; end: number; endLine: number; bytes: number; tooLong: boolean } | null = null;
    const flushParagraph = () => {
      if (para !== null && !para.tooLong) {
        out.push(para.parts.join('\n'), para.line, para.start, para.end, para.endLine);
      }
      para = null;
    };

    /** A line that could not be used (bad bytes, bad JSON, too long). */
    const badLine = (lineNo: number, s: number, e: number, nextLine: number, reason: string) => {
      this.#report(fileIdx, lineNo, s, reason);
      if (para !== null) {
        // A bad line inside a paragraph is dropped; the paragraph goes on.
        para.end = e;
        para.endLine = nextLine;
      }
    };

    /** One complete line (see LineSink.line). */
    const onLine = (buf: Buffer, s: number, e: number, lineNo: number, lineStart: number, lineEnd: number, nextLine: number) => {
      if (e === s) {
        if (paragraphs) flushParagraph();
        return;
      }
      let text: string;
      try {
        text = decoder.decode(buf.subarray(s, e));
      } catch {
        badLine(lineNo, lineStart, lineEnd, nextLine, INVALID_UTF8);
        return;
      }
      if (isBlank(text)) {
        if (paragraphs) flushParagraph();
        return;
      }
      if (jsonl) {
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch (err) {
          badLine(lineNo, lineStart, lineEnd, nextLine, `invalid JSON: ${(err as Error).message}`);
          return;
        }
        const t = recordText(value, fields);
        if (t === null) {
          badLine(lineNo, lineStart, lineEnd, nextLine, missingFields(fields));
          return;
        }
        if (isBlank(t)) return;
        out.push(t, lineNo, lineStart, lineEnd, nextLine);
      } else if (paragraphs) {
        const bytes = e - s + 1;
        if (para === null) {
          para = { parts: [text], line: lineNo, start: lineStart, end: lineEnd, endLine: nextLine, bytes, tooLong: false };
        } else {
          para.end = lineEnd;
          para.endLine = nextLine;
          if (!para.tooLong) {
            para.bytes += bytes;
            if (para.bytes > MAX_DOCUMENT_BYTES) {
              para.tooLong = true;
              para.parts = [];
              // (deduplicated by this line's offset, reported at the paragraph's first line)
              this.#report(fileIdx, para.line, lineStart, `document longer than ${MAX_DOCUMENT_BYTES} bytes`);
            } else {
              para.parts.push(text);
            }
          }
        }
      } else {
        out.push(text, lineNo, lineStart, lineEnd, nextLine);
      }
    };

    const iv: Interval = { file: fileIdx, start, end: start };
    this.#live.add(iv);
    const sink: LineSink = {
      line: onLine,
      tooLong: (lineNo, lineStart, lineEnd, nextLine) => badLine(lineNo, lineStart, lineEnd, nextLine, `line longer than ${MAX_DOCUMENT_BYTES} bytes`),
      end: () => {
        if (paragraphs) flushParagraph();
      },
    };
    try {
      for await (const reached of scanLines(entry.path, sink, { start, startLine, until, maxLineBytes: MAX_DOCUMENT_BYTES })) {
        iv.end = reached;
        if (out.length > 0) {
          yield out;
          out.clear();
        }
      }
    } catch (err) {
      if (err instanceof DataFileError) throw new CorpusError(`error reading ${entry.path}: ${err.reason}`);
      throw err;
    } finally {
      this.#finishInterval(iv);
    }
  }
}

// ------------------------------------------------------------------ helpers

function pathError(p: string, e: unknown): CorpusError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new CorpusError(`corpus path does not exist: ${p}`);
  if (code === 'EACCES' || code === 'EPERM') return new CorpusError(`corpus path is not readable (${code}): ${p}`);
  return new CorpusError(`cannot read corpus path ${p}: ${(e as Error)?.message ?? String(e)}`);
}

/** Corpus files under `abs` (recursively, hidden entries skipped, symlinks
 * followed once), sorted by relative path. */
async function listCorpusFiles(shown: string, abs: string): Promise<{ path: string; rel: string }[]> {
  const found: { path: string; rel: string }[] = [];
  const visited = new Set<string>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    let real: string;
    let entries: fs.Dirent[];
    try {
      real = await fsp.realpath(dir);
      if (visited.has(real)) return;
      visited.add(real);
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (e) {
      throw pathError(dir === abs ? shown : dir, e);
    }
    for (const ent of entries) {
      if (ent.name.startsWith('.')) continue;
      const full = path.join(dir, ent.name);
      const r = rel === '' ? ent.name : `${rel}/${ent.name}`;
      let isDir = ent.isDirectory();
      let isFile = ent.isFile();
      if (ent.isSymbolicLink()) {
        try {
          const st = await fsp.stat(full);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          continue; // dangling link
        }
      }
      if (isDir) await walk(full, r);
      else if (isFile && CORPUS_EXTENSIONS.has(path.extname(ent.name).toLowerCase())) found.push({ path: full, rel: r });
    }
  };
  await walk(abs, '');
  found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return found;
}

function isBlank(s: string): boolean {
  const c = s.charCodeAt(0);
  if (c > 32 && c < 127) return false;
  return s.trim().length === 0;
}

interface JsonField {
  name: string;
  path: string[];
}

/** The record's text: its fields that hold strings, joined by a line break; null when none does. */
function recordText(value: unknown, fields: JsonField[]): string | null {
  if (fields.length === 1) {
    const t = getField(value, fields[0].name, fields[0].path);
    return typeof t === 'string' ? t : null;
  }
  let found = false;
  const parts: string[] = [];
  for (const field of fields) {
    const t = getField(value, field.name, field.path);
    if (typeof t !== 'string') continue;
    found = true;
    if (!isBlank(t)) parts.push(t);
  }
  // Fields present but blank: an empty document, skipped as a blank one field would be.
  return found ? parts.join('\n') : null;
}

function missingFields(fields: JsonField[]): string {
  if (fields.length === 1) return `field "${fields[0].name}" missing or not a string`;
  return `none of the fields ${fields.map((f) => `"${f.name}"`).join(', ')} present as a string`;
}

function getField(value: unknown, field: string, fieldPath: string[]): unknown {
  if (value === null || typeof value !== 'object') return undefined;
  const direct = (value as Record<string, unknown>)[field];
  if (direct !== undefined || fieldPath.length === 1) return direct;
  let v: unknown = value;
  for (const key of fieldPath) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units, finished with murmur3's mixer. */
function stringHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

/** Uniform in [0, 1), from the file's hash and the document's start line. */
function lineHash(fileHash: number, line: number): number {
  const lo = line >>> 0;
  const hi = Math.floor(line / 4294967296) >>> 0;
  let h = fmix32((fileHash ^ Math.imul(lo, 0x9e3779b1)) >>> 0);
  h = fmix32((h ^ Math.imul(hi + 1, 0x27d4eb2f)) >>> 0);
  return h / 4294967296;
}
