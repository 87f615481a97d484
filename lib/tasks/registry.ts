// Tasks by name: every CLUE and FewCLUE task knows its file format, its head,
// its labels and its metrics, so `--task tnews` is all a user has to say. A
// user's own data is described by a generic JSON Lines spec instead.
//
// A task is plain data (no functions), so a model dir can store the resolved
// task, labels included, as JSON and reproduce it exactly (taskFromJSON).

import { HEAD_KINDS, type HeadKind } from '../../bindings/native.js';
import { MIN_SEQUENCE_LENGTH } from '../data/sequence-length.js';

/** How a file is laid out and which record fields hold what. */
export type FormatName =
  /** JSON Lines, one record a line: `textFields` (one, or two for a pair) and `labelField`. */
  | 'jsonl'
  /** JSON Lines: `text`, `target` {span1_index, span1_text, span2_index, span2_text}, `label`. */
  | 'cluewsc'
  /** JSON Lines: `abst`, `keyword` (array), `label`. */
  | 'csl'
  /** JSON Lines: FewCLUE (`content` with one `#idiom#`, `candidates`, `answer`) or CLUE (`content` array with `#idiomNNNNNN#` blanks, answers in `<split>_answer.json`). */
  | 'chid'
  /** One JSON array of `[[context…], [{question, choice[], answer}], id]`. */
  | 'c3'
  /** SQuAD JSON: `{data: [{paragraphs: [{context, qas: [{id, question, answers: [{text, answer_start}]}]}]}]}`. */
  | 'cmrc2018'
  /** `{text, label: {type: {entity: [[start, end]]}}}` records (end inclusive), JSON Lines or pretty-printed. */
  | 'cluener';

/** Metric names as results.json reports them; all are fractions in [0, 1]. */
export type MetricName = 'accuracy' | 'precision' | 'recall' | 'f1' | 'em';

export interface TaskSpec {
  /** The name users pass (`--task tnews`). */
  name: string;
  format: FormatName;
  head: HeadKind;
  /**
   * Label strings in head order (index = head output). Absent on a task whose
   * labels come from its training file (iflytek, csldcp, a user's task
   * without `labels`): resolveTask() fills them in, sorted.
   */
  labels?: string[];
  /** Human-readable names of `labels`, same order (tnews: news_story, …). */
  labelDescriptions?: string[];
  /** jsonl format: the record field(s) holding the text(s): one, or two for a sentence pair. */
  textFields?: string[];
  /** jsonl format: the record field holding the label (multilabel: an array of labels). */
  labelField?: string;
  /** The metrics evaluation reports for this task; the first is the headline. */
  metrics: MetricName[];
  /** Default maximum sequence length (tokens, [CLS]/[SEP] included). */
  maxLength: number;
  description: string;
}

/** A task ready to load: its labels are known (empty for multiple choice, whose label is an option index). */
export type Task = TaskSpec & { labels: string[] };

/** A user's own data in JSON Lines, as they would write it in tasks.json. */
export interface JsonlTaskSpec {
  /** 'pair' is classification of a sentence pair (two text fields). */
  kind: 'classification' | 'multilabel' | 'pair';
  name?: string;
  /** Default 'text' (classification, multilabel). */
  textField?: string;
  /** Default ['sentence1', 'sentence2'] for 'pair'. */
  textFields?: string[];
  /** Default 'label'. */
  labelField?: string;
  /** Label strings in head order; derived from the training file (sorted) when absent. */
  labels?: string[];
  maxLength?: number;
}

export class TaskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TaskError';
  }
}

const TNEWS_LABELS: Array<[string, string]> = [
  ['100', 'news_story'],
  ['101', 'news_culture'],
  ['102', 'news_entertainment'],
  ['103', 'news_sports'],
  ['104', 'news_finance'],
  ['106', 'news_house'],
  ['107', 'news_car'],
  ['108', 'news_edu'],
  ['109', 'news_tech'],
  ['110', 'news_military'],
  ['112', 'news_travel'],
  ['113', 'news_world'],
  ['114', 'news_stock'],
  ['115', 'news_agriculture'],
  ['116', 'news_game'],
];

const NLI_LABELS = ['entailment', 'neutral', 'contradiction'];
const BINARY = ['0', '1'];

/** CLUENER2020's 10 entity types, sorted. */
export const CLUENER_LABELS = [
  'address',
  'book',
  'company',
  'game',
  'government',
  'movie',
  'name',
  'organization',
  'position',
  'scene',
];

function pair(name: string, labels: string[], description: string): TaskSpec {
  return {
    name,
    format: 'jsonl',
    head: 'classification',
    textFields: ['sentence1', 'sentence2'],
    labelField: 'label',
    labels,
    metrics: ['accuracy'],
    maxLength: 128,
    description,
  };
}

function single(name: string, textField: string, labels: string[] | undefined, description: string): TaskSpec {
  return {
    name,
    format: 'jsonl',
    head: 'classification',
    textFields: [textField],
    labelField: 'label',
    ...(labels ? { labels } : {}),
    metrics: ['accuracy'],
    maxLength: 128,
    description,
  };
}

const TASK_LIST: TaskSpec[] = [
  {
    ...single('tnews', 'sentence', TNEWS_LABELS.map(([code]) => code), 'news title classification, 15 classes (codes 100–116 without 105/111)'),
    labelDescriptions: TNEWS_LABELS.map(([, desc]) => desc),
  },
  single('iflytek', 'sentence', undefined, 'app description classification, 119 classes (labels from the training file)'),
  single('csldcp', 'content', undefined, 'paper abstract → discipline, 67 classes (labels from the training file)'),
  single('eprstmt', 'sentence', ['Negative', 'Positive'], 'e-commerce review sentiment'),
  pair('afqmc', BINARY, 'question pair matching (Ant Financial)'),
  pair('bustm', BINARY, 'dialogue short text matching'),
  pair('cmnli', NLI_LABELS, 'natural language inference (translated MNLI)'),
  pair('ocnli', NLI_LABELS, 'natural language inference (original Chinese)'),
  {
    name: 'cluewsc',
    format: 'cluewsc',
    head: 'classification',
    labels: ['false', 'true'],
    metrics: ['accuracy'],
    maxLength: 128,
    description: 'pronoun coreference (Winograd); span1 is marked _…_, span2 [ … ] in the text',
  },
  {
    name: 'csl',
    format: 'csl',
    head: 'classification',
    labels: BINARY,
    metrics: ['accuracy'],
    maxLength: 256,
    description: 'are these keywords the abstract’s real keywords? (keywords joined by ；, then the abstract)',
  },
  {
    name: 'chid',
    format: 'chid',
    head: 'multiple-choice',
    metrics: ['accuracy'],
    maxLength: 128,
    description: 'idiom cloze: each candidate idiom fills the blank; one example per blank',
  },
  {
    name: 'c3',
    format: 'c3',
    head: 'multiple-choice',
    metrics: ['accuracy'],
    maxLength: 512,
    description: 'multiple-choice reading comprehension: (context, question + option) per option',
  },
  {
    name: 'cmrc2018',
    format: 'cmrc2018',
    head: 'span',
    labels: ['answer'],
    metrics: ['em', 'f1'],
    maxLength: 512,
    description: 'extractive reading comprehension (SQuAD JSON): [CLS] question [SEP] context [SEP], answer span in the context',
  },
  {
    name: 'cluener',
    format: 'cluener',
    head: 'span',
    labels: CLUENER_LABELS,
    metrics: ['f1', 'precision', 'recall'],
    maxLength: 128,
    description: 'named entities, 10 types (entity-level micro F1)',
  },
];

/** Other names users know the tasks by. */
const ALIASES: Record<string, string> = { wsc: 'cluewsc', cluewsc2020: 'cluewsc', cmrc: 'cmrc2018', ner: 'cluener' };

/** Every built-in task, by name. */
export const TASKS: Readonly<Record<string, Readonly<TaskSpec>>> = Object.freeze(
  Object.fromEntries(TASK_LIST.map((t) => [t.name, Object.freeze(t)])),
);

/** Names of the built-in tasks (aliases not included). */
export const TASK_NAMES: readonly string[] = TASK_LIST.map((t) => t.name);

/** The built-in task called `name` (case-insensitive; wsc → cluewsc), as a fresh copy. */
export function getTask(name: string): TaskSpec {
  const key = name.toLowerCase();
  const spec = TASKS[ALIASES[key] ?? key];
  if (!spec) {
    throw new TaskError(
      `unknown task ${JSON.stringify(name)}: the built-in tasks are ${TASK_NAMES.join(', ')} ` +
        `(or describe your own JSON Lines data: {kind, textField(s), labelField, labels})`,
    );
  }
  return structuredClone(spec) as TaskSpec;
}

/** A TaskSpec for a user's JSON Lines data. */
export function jsonlTask(spec: JsonlTaskSpec): TaskSpec {
  const where = `task ${JSON.stringify(spec.name ?? 'custom')}`;
  if (spec.kind !== 'classification' && spec.kind !== 'multilabel' && spec.kind !== 'pair') {
    throw new TaskError(`${where}: kind must be 'classification', 'multilabel' or 'pair', got ${JSON.stringify(spec.kind)}`);
  }
  const textFields =
    spec.textFields ?? (spec.textField !== undefined ? [spec.textField] : spec.kind === 'pair' ? ['sentence1', 'sentence2'] : ['text']);
  if (!Array.isArray(textFields) || textFields.length < 1 || textFields.length > 2 || !textFields.every((f) => typeof f === 'string' && f)) {
    throw new TaskError(`${where}: textFields must name one or two record fields, got ${JSON.stringify(textFields)}`);
  }
  if (spec.kind === 'pair' && textFields.length !== 2) {
    throw new TaskError(`${where}: a pair task needs two textFields, got ${JSON.stringify(textFields)}`);
  }
  if (spec.labels !== undefined) checkLabels(spec.labels, where);
  const maxLength = spec.maxLength ?? 128;
  checkMaxLength(maxLength, where);
  return {
    name: spec.name ?? 'custom',
    format: 'jsonl',
    head: spec.kind === 'multilabel' ? 'multilabel' : 'classification',
    textFields,
    labelField: spec.labelField ?? 'label',
    ...(spec.labels ? { labels: [...spec.labels] } : {}),
    metrics: spec.kind === 'multilabel' ? ['f1', 'precision', 'recall'] : ['accuracy'],
    maxLength,
    description: `${spec.kind} over JSON Lines field${textFields.length > 1 ? 's' : ''} ${textFields.join(', ')}`,
  };
}

/** A built-in task name, a TaskSpec, or a user's JsonlTaskSpec → a TaskSpec. */
export function toTaskSpec(task: string | TaskSpec | JsonlTaskSpec): TaskSpec {
  if (typeof task === 'string') return getTask(task);
  if (task && typeof task === 'object' && 'kind' in task && !('format' in task)) return jsonlTask(task as JsonlTaskSpec);
  return taskFromJSON(task, 'task spec');
}

/** Sorts derived labels: numerically when every label is an integer (iflytek's 0…118), else by code unit. */
export function sortLabels(labels: Iterable<string>): string[] {
  const list = [...new Set(labels)];
  const numeric = list.every((l) => /^-?\d+$/.test(l));
  return numeric ? list.sort((a, b) => Number(a) - Number(b)) : list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkLabels(labels: unknown, where: string): asserts labels is string[] {
  if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string')) {
    throw new TaskError(`${where}: labels must be an array of strings, got ${JSON.stringify(labels)}`);
  }
  const seen = new Set<string>();
  for (const l of labels) {
    if (seen.has(l)) throw new TaskError(`${where}: label ${JSON.stringify(l)} is listed twice`);
    seen.add(l);
  }
}

function checkMaxLength(maxLength: unknown, where: string): void {
  if (!Number.isInteger(maxLength) || (maxLength as number) < MIN_SEQUENCE_LENGTH) {
    throw new TaskError(`${where}: maxLength must be an integer ≥ ${MIN_SEQUENCE_LENGTH}, got ${JSON.stringify(maxLength)}`);
  }
}

const FORMATS: readonly FormatName[] = ['jsonl', 'cluewsc', 'csl', 'chid', 'c3', 'cmrc2018', 'cluener'];
const METRICS: readonly MetricName[] = ['accuracy', 'precision', 'recall', 'f1', 'em'];

/**
 * Validates a task read back from JSON (a model dir's task.json, a tasks.json
 * entry) and returns it as a TaskSpec; `source` names the origin in errors.
 */
export function taskFromJSON(value: unknown, source: string): TaskSpec {
  const fail = (what: string): never => {
    throw new TaskError(`${source}: ${what}`);
  };
  if (!value || typeof value !== 'object' || Array.isArray(value)) fail('a task must be a JSON object');
  const t = { ...(value as Record<string, unknown>) };
  if (typeof t.name !== 'string' || !t.name) fail('task.name must be a non-empty string');
  if (!FORMATS.includes(t.format as FormatName)) fail(`task.format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(t.format)}`);
  if (!HEAD_KINDS.includes(t.head as HeadKind)) fail(`task.head must be one of ${HEAD_KINDS.join(', ')}, got ${JSON.stringify(t.head)}`);
  if (t.labels !== undefined) checkLabels(t.labels, source);
  if (t.labelDescriptions !== undefined) {
    checkLabels(t.labelDescriptions, `${source} (labelDescriptions)`);
    if (!Array.isArray(t.labels) || (t.labelDescriptions as string[]).length !== t.labels.length) {
      fail('task.labelDescriptions must match task.labels one to one');
    }
  }
  if (t.format === 'jsonl') {
    const f = t.textFields;
    if (!Array.isArray(f) || f.length < 1 || f.length > 2 || !f.every((x) => typeof x === 'string' && x)) {
      fail(`task.textFields must name one or two record fields, got ${JSON.stringify(f)}`);
    }
    if (typeof t.labelField !== 'string' || !t.labelField) fail('task.labelField must be a non-empty string');
  }
  if (!Array.isArray(t.metrics) || t.metrics.length === 0 || !t.metrics.every((m) => METRICS.includes(m as MetricName))) {
    fail(`task.metrics must be a non-empty list of ${METRICS.join(', ')}, got ${JSON.stringify(t.metrics)}`);
  }
  if (t.maxLength === undefined) t.maxLength = 128;
  checkMaxLength(t.maxLength, source);
  if (t.description === undefined) t.description = '';
  if (typeof t.description !== 'string') fail('task.description must be a string');
  return structuredClone(t) as unknown as TaskSpec;
}
