// Loading a task's file: read it in the task's format, skip and report bad
// records (file:line), encode the rest into LoadedExamples.
//
//   const task = await resolveTask('iflytek', 'train.json');  // labels fixed, or derived from train
//   const train = await loadTaskFile(task, 'train.json', tokenizer);
//   const dev = await loadTaskFile(task, 'dev.json', tokenizer); // same labels, same order

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { checkDataFile, DataFileError, textLines, type TextLine } from '../data/data-file.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { Encoder } from './encode.js';
import { FileFormatError, FORMATS, RecordError, type ParseContext, type TaskRecord } from './formats.js';
import { WholeFileTooLargeError } from './json-records.js';
import { sortLabels, TaskError, toTaskSpec, type JsonlTaskSpec, type Task, type TaskSpec } from './registry.js';
import type { LoadedExample, RecordProblem } from './types.js';

/** A file that is not in its task's format at all (or unreadable, or empty). */
export class TaskFormatError extends TaskError {
  constructor(message: string) {
    super(message);
    this.name = 'TaskFormatError';
  }
}

export interface ReadOptions {
  /**
   * CLUE chid: the answer map file ({"#idiom000000#": 3, …}). By default
   * `<name>_answer.json` next to `<name>.json` is used when it exists.
   */
  answersFile?: string;
}

export interface LoadOptions extends ReadOptions {
  /** Maximum tokens per sequence ([CLS]/[SEP] included); default: the task's maxLength. */
  maxLength?: number;
  /**
   * A training file: a record without its gold label (missing or null) is
   * skipped and reported with file:line, instead of being loaded unlabelled
   * (as test records are).
   */
  requireLabels?: boolean;
}

/** A record of the file, format-neutral, with where it came from. */
export interface ReadRecord {
  record: TaskRecord;
  line: number;
  id: string | number;
}

export interface ReadTaskFile {
  file: string;
  records: ReadRecord[];
  problems: RecordProblem[];
  /** Records kept after a documented repair (e.g. invalid UTF-8 read as U+FFFD), with what was done. */
  repairs: RecordProblem[];
  /** Records in the file (good and bad; c3/chid records can hold several examples). */
  count: number;
  /** Things worth telling the user that are not a bad record (e.g. no chid answer file found). */
  warnings: string[];
}

export interface LoadedTaskFile extends ReadTaskFile {
  task: Task;
  examples: LoadedExample[];
  /** Examples cut to maxLength. */
  truncated: number;
  /** Gold spans dropped because truncation cut them (or they covered no token). */
  droppedSpans: number;
}

/** Reads the answer map of a CLUE chid file, if one is given or sits next to it. */
async function chidAnswers(file: string, options: ReadOptions, warnings: string[]): Promise<Map<string, number> | undefined> {
  const sibling = join(dirname(file), basename(file).replace(/\.json$/, '') + '_answer.json');
  const path = options.answersFile ?? (existsSync(sibling) ? sibling : undefined);
  if (!path) return undefined;
  let map: unknown;
  try {
    await checkDataFile(path);
    map = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new TaskFormatError(`${path}: cannot read the chid answer file: ${(err as Error).message}`);
  }
  if (!map || typeof map !== 'object' || Array.isArray(map)) {
    throw new TaskFormatError(`${path}: a chid answer file must be one JSON object {"#idiom000000#": index, …}`);
  }
  warnings.push(`chid answers from ${path}`);
  return new Map(Object.entries(map as Record<string, number>));
}

/**
 * Reads `file` in `task`'s format into format-neutral records, skipping bad
 * ones (reported in `problems` with file:line) and listing repaired ones in
 * `repairs`. Throws TaskFormatError when the file cannot be read (not a
 * readable regular file, too large for a read-whole format), holds no record,
 * or none of its records is in the format (a file of another task or format).
 * JSON Lines files are streamed, never read whole.
 */
export async function readTaskFile(taskLike: string | TaskSpec | JsonlTaskSpec, file: string, options: ReadOptions = {}): Promise<ReadTaskFile> {
  const task = toTaskSpec(taskLike);
  const format = FORMATS[task.format];
  const expected = format.expected(task);
  const fail = (why: string) => new TaskFormatError(`${file}: not a ${task.name} file (expected ${expected}): ${why}`);
  const cannotRead = (why: string) => new TaskFormatError(`${file}: cannot read the ${task.name} file: ${why}`);
  const warnings: string[] = [];
  const records: ReadRecord[] = [];
  const problems: RecordProblem[] = [];
  const repairs: RecordProblem[] = [];
  let line = 0; // of the record being parsed
  const ctx: ParseContext = { task, index: 0, repair: (message) => repairs.push({ file, line, message }) };
  /** The file's lines; a line with invalid UTF-8 is kept (bad bytes read as U+FFFD) and reported. */
  async function* lines(): AsyncGenerator<TextLine[]> {
    for await (const batch of textLines(file)) {
      for (const l of batch) if (l.invalidUtf8) repairs.push({ file, line: l.line, message: 'invalid UTF-8: the bad bytes were read as U+FFFD' });
      yield batch;
    }
  }
  let count = 0;
  try {
    if (task.format === 'chid') ctx.chidAnswers = await chidAnswers(file, options, warnings);
    for await (const batch of format.records(lines())) for (const raw of batch) {
      count++;
      line = raw.line;
      if ('error' in raw) {
        problems.push({ file, line: raw.line, message: raw.error });
      } else {
        let items;
        try {
          items = format.parse(raw.value, ctx);
        } catch (err) {
          if (!(err instanceof RecordError)) throw err;
          items = [{ error: err.message }];
        }
        for (const item of items) {
          if ('error' in item) problems.push({ file, line: raw.line, message: item.error });
          else records.push({ record: item.record, line: raw.line, id: item.id });
        }
      }
      ctx.index++;
    }
  } catch (err) {
    if (err instanceof DataFileError) throw cannotRead(`it ${err.reason}`);
    if (err instanceof WholeFileTooLargeError) throw cannotRead(err.message);
    if (err instanceof FileFormatError) throw fail(err.message);
    throw err;
  }
  repairs.sort((a, b) => a.line - b.line);
  if (count === 0) throw fail('the file holds no record');
  if (records.length === 0) throw fail(`no record could be used; line ${problems[0].line}: ${problems[0].message}`);
  if (task.format === 'chid' && records.every((r) => r.record.kind === 'multiple-choice' && r.record.answer === null)) {
    warnings.push(`${file}: no answers (none inline, no answer file): loaded for prediction only`);
  }
  return { file, records, problems, repairs, count, warnings };
}

/** Whether a record carries its gold answer (test files' records don't). */
function hasLabel(record: TaskRecord): boolean {
  switch (record.kind) {
    case 'classification':
      return record.label !== null;
    case 'multilabel':
      return record.labels !== null;
    case 'multiple-choice':
      return record.answer !== null;
    case 'span':
      return record.spans !== null;
  }
}

/** The labels a file's records use, sorted (numerically when all are integers). */
function labelsIn(records: ReadRecord[]): string[] {
  const seen: string[] = [];
  for (const { record } of records) {
    if (record.kind === 'classification' && record.label !== null) seen.push(record.label);
    else if (record.kind === 'multilabel' && record.labels) seen.push(...record.labels);
    else if (record.kind === 'span' && record.spans) seen.push(...record.spans.map((s) => s.label));
  }
  return sortLabels(seen);
}

/**
 * A task whose labels are known: a built-in task name, a TaskSpec or a user's
 * JsonlTaskSpec. Fixed labels are kept; otherwise they are the labels of
 * `trainFile`, sorted (numerically when all are integers: iflytek 0…118).
 * The result is plain JSON: store it with a fine-tuned model to reproduce the
 * label order exactly.
 */
export async function resolveTask(taskLike: string | TaskSpec | JsonlTaskSpec, trainFile?: string, options: ReadOptions = {}): Promise<Task> {
  const spec = toTaskSpec(taskLike);
  if (spec.labels) return { ...spec, labels: [...spec.labels] };
  if (spec.head === 'multiple-choice') return { ...spec, labels: [] };
  if (!trainFile) {
    throw new TaskError(`task ${spec.name}: its labels come from the training file, and none was given`);
  }
  const { records } = await readTaskFile(spec, trainFile, options);
  const labels = labelsIn(records);
  if (labels.length === 0) throw new TaskFormatError(`${trainFile}: no labelled record to take ${spec.name}'s labels from`);
  return { ...spec, labels };
}

/**
 * Reads and encodes `file` for `task` (whose labels must be known: see
 * resolveTask). Bad records, including labels the task does not have, are
 * skipped and listed in `problems` with file:line.
 */
export async function loadTaskFile(task: Task, file: string, tokenizer: Tokenizer, options: LoadOptions = {}): Promise<LoadedTaskFile> {
  if (!Array.isArray(task.labels)) {
    throw new TaskError(`task ${task.name}: labels unknown; resolve the task first (resolveTask(task, trainFile))`);
  }
  const read = await readTaskFile(task, file, options);
  const encoder = new Encoder(task, tokenizer, options.maxLength ?? task.maxLength);
  const examples: LoadedExample[] = [];
  const problems = [...read.problems];
  let truncated = 0;
  let droppedSpans = 0;
  for (const { record, line, id } of read.records) {
    if (options.requireLabels && !hasLabel(record)) {
      problems.push({ file, line, message: 'no gold label (missing or null): a training record needs one' });
      continue;
    }
    try {
      const encoded = encoder.encode(record);
      const loaded: LoadedExample = { example: encoded.example, line, id };
      if (record.kind === 'span' && record.answers) loaded.answers = record.answers;
      examples.push(loaded);
      if (encoded.truncated) truncated++;
      droppedSpans += encoded.droppedSpans;
    } catch (err) {
      if (!(err instanceof RecordError)) throw err;
      problems.push({ file, line, message: err.message });
    }
  }
  problems.sort((a, b) => a.line - b.line);
  if (examples.length === 0) {
    throw new TaskFormatError(
      `${file}: not a ${task.name} file (expected ${FORMATS[task.format].expected(task)}): no record could be used; ` +
        `line ${problems[0].line}: ${problems[0].message}`,
    );
  }
  return { ...read, problems, task, examples, truncated, droppedSpans };
}

/** "file:line: message" lines for a problem list, at most `limit` (then a count of the rest). */
export function formatProblems(problems: readonly RecordProblem[], limit = 10): string {
  const lines = problems.slice(0, limit).map((p) => `${p.file}:${p.line}: ${p.message}`);
  if (problems.length > limit) lines.push(`… and ${problems.length - limit} more`);
  return lines.join('\n');
}
