// The CLUE/FewCLUE file formats, each turned into format-neutral task records:
// texts, labels as strings, options, character spans. Nothing here tokenizes;
// encode.ts turns records into model inputs.
//
// A record that cannot be used throws RecordError (the loader skips it and
// reports file:line); a file that is not in the format at all throws
// FileFormatError (the loader turns it into one error naming the format). A
// record repaired on the way in (a field read in a documented lenient way) is
// kept and reported through ParseContext.repair (file:line, counted).

import type { TextLine } from '../data/data-file.js';
import { jsonLines, jsonValues, lineAt, wholeText, type RawRecord } from './json-records.js';
import type { FormatName, TaskSpec } from './registry.js';

/** A character span [start, end) of a text (end exclusive, JS string indices), with its label. */
export interface CharSpan {
  label: string;
  start: number;
  end: number;
}

/** One option of a multiple-choice record, as the text(s) the model reads. */
export interface Choice {
  text: string;
  textB?: string;
  /** Character range of `text` that must survive truncation (chid: the idiom in its blank). */
  focus?: [number, number];
}

/** A format-neutral record; a null label means an unlabelled (test) record. */
export type TaskRecord =
  | { kind: 'classification'; text: string; textB?: string; label: string | null }
  | { kind: 'multilabel'; text: string; textB?: string; labels: string[] | null }
  | { kind: 'multiple-choice'; choices: Choice[]; answer: number | null }
  | {
      kind: 'span';
      /** The text spans point into (cmrc2018: the context). */
      text: string;
      /** Read before the text, as segment A (cmrc2018). */
      question?: string;
      spans: CharSpan[] | null;
      /** Reference answer texts (cmrc2018), for EM/F1 against the official answers. */
      answers?: string[];
    };

/** What one file record yields: one item per example (c3: per question; CLUE chid: per blank; cmrc2018: one qa). */
export type ParsedItem = { id: string | number; record: TaskRecord } | { error: string };

export class RecordError extends Error {}
export class FileFormatError extends Error {}

export interface ParseContext {
  task: TaskSpec;
  /** 0-based index of the record in its file. */
  index: number;
  /** CLUE chid: blank tag (#idiom000123#) → index of the right candidate. */
  chidAnswers?: Map<string, number>;
  /** Reports a repair made to the record being parsed (the loader adds file:line). */
  repair(message: string): void;
}

export interface Format {
  /** What a file of this format looks like, for the wrong-format error. */
  expected(task: TaskSpec): string;
  /** Splits a file's lines (in batches) into raw records with their first lines (in batches). */
  records(lines: AsyncIterable<TextLine[]>): AsyncIterable<RawRecord[]>;
  /** Turns one raw record into examples' records; throws RecordError. */
  parse(value: unknown, ctx: ParseContext): ParsedItem[];
}

// ---------------------------------------------------------------------------
// Field helpers: every message names the field and what was found.

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}` : `${typeof v} ${JSON.stringify(v)}`;
}

function asObject(v: unknown): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new RecordError(`expected a JSON object, got ${describe(v)}`);
  return v as Record<string, unknown>;
}

function str(obj: Record<string, unknown>, field: string): string {
  const v = obj[field];
  if (typeof v !== 'string') throw new RecordError(`field "${field}" must be a string, got ${describe(v)}`);
  return v;
}

function strings(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new RecordError(`field "${field}" must be an array of strings, got ${describe(v)}`);
  }
  return v;
}

/** A label as a string (tnews/iflytek/chid files use integers, the rest strings); null when absent. */
function labelOf(v: unknown, field: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  throw new RecordError(`field "${field}" must be a string or a number, got ${describe(v)}`);
}

function idOf(obj: Record<string, unknown>, ctx: ParseContext): string | number {
  for (const key of ['id', 'idx', 'qid']) {
    const v = obj[key];
    if (typeof v === 'string' || typeof v === 'number') return v;
  }
  return ctx.index;
}

/** JSON Lines, unless the file is plainly one JSON array / pretty-printed JSON (then the caller's error says so). */
const jsonLinesRecords = (lines: AsyncIterable<TextLine[]>) => jsonLines(lines);

// ---------------------------------------------------------------------------
// jsonl: classification, sentence pairs, multi-label

const jsonl: Format = {
  expected: (task) =>
    `JSON Lines, one object a line with ${(task.textFields ?? []).map((f) => `"${f}"`).join(' and ')} ` +
    `(string${(task.textFields ?? []).length > 1 ? 's' : ''}) and "${task.labelField}"`,
  records: jsonLinesRecords,
  parse(value, ctx) {
    const obj = asObject(value);
    const [a, b] = (ctx.task.textFields ?? []).map((f) => str(obj, f));
    const field = ctx.task.labelField ?? 'label';
    const raw = obj[field];
    if (ctx.task.head === 'multilabel') {
      let labels: string[] | null = null;
      if (Array.isArray(raw)) {
        labels = raw.map((l) => {
          const label = labelOf(l, field);
          if (label === null) throw new RecordError(`field "${field}" holds a null label`);
          return label;
        });
      }
      else if (raw !== undefined && raw !== null) {
        // Like c3's plain-string context: a single value where an array belongs is read as one element, and reported.
        labels = [labelOf(raw, field)!];
        ctx.repair(`field "${field}" is ${describe(raw)}, not an array of labels (a multi-label task): read as the one label [${JSON.stringify(labels[0])}]`);
      }
      return [{ id: idOf(obj, ctx), record: { kind: 'multilabel', text: a, ...(b !== undefined ? { textB: b } : {}), labels } }];
    }
    const label = labelOf(raw, field);
    return [{ id: idOf(obj, ctx), record: { kind: 'classification', text: a, ...(b !== undefined ? { textB: b } : {}), label } }];
  },
};

// ---------------------------------------------------------------------------
// cluewsc: the two spans are marked in the text so [CLS] can see which pair is asked about

const cluewsc: Format = {
  expected: () => 'JSON Lines, one object a line with "text", "target" {span1_index, span1_text, span2_index, span2_text} and "label"',
  records: jsonLinesRecords,
  parse(value, ctx) {
    const obj = asObject(value);
    const text = str(obj, 'text');
    const target = asObject(obj.target);
    const span = (n: 1 | 2) => {
      const index = target[`span${n}_index`];
      const spanText = target[`span${n}_text`];
      if (!Number.isInteger(index) || typeof spanText !== 'string' || !spanText) {
        throw new RecordError(`target.span${n}_index/span${n}_text must be an integer and a non-empty string`);
      }
      const at = index as number;
      if (text.slice(at, at + spanText.length) !== spanText) {
        throw new RecordError(
          `target.span${n}_text ${JSON.stringify(spanText)} is not at span${n}_index ${at} of the text ` +
            `(found ${JSON.stringify(text.slice(at, at + spanText.length))})`,
        );
      }
      return { start: at, end: at + spanText.length };
    };
    const s1 = span(1);
    const s2 = span(2);
    if (s1.start < s2.end && s2.start < s1.end) throw new RecordError('target spans 1 and 2 overlap');
    // Insert from the right so earlier indices stay valid: span1 (the noun) as _…_, span2 (the pronoun) as […].
    const marks = [
      { ...s1, open: '_', close: '_' },
      { ...s2, open: '[', close: ']' },
    ].sort((x, y) => y.start - x.start);
    let marked = text;
    for (const m of marks) {
      marked = marked.slice(0, m.start) + m.open + marked.slice(m.start, m.end) + m.close + marked.slice(m.end);
    }
    return [{ id: idOf(obj, ctx), record: { kind: 'classification', text: marked, label: labelOf(obj.label, 'label') } }];
  },
};

// ---------------------------------------------------------------------------
// csl: keywords (segment A) against the abstract (segment B)

const csl: Format = {
  expected: () => 'JSON Lines, one object a line with "abst" (string), "keyword" (array of strings) and "label"',
  records: jsonLinesRecords,
  parse(value, ctx) {
    const obj = asObject(value);
    const abst = str(obj, 'abst');
    const keywords = strings(obj.keyword, 'keyword');
    return [
      { id: idOf(obj, ctx), record: { kind: 'classification', text: keywords.join('；'), textB: abst, label: labelOf(obj.label, 'label') } },
    ];
  },
};

// ---------------------------------------------------------------------------
// chid: idiom cloze. Each candidate is written into the blank; the other blanks
// of a CLUE passage become four [MASK]s (an idiom's length), not a tag string.

const FEW_BLANK = '#idiom#';
const CLUE_BLANK = /#idiom\d+#/g; // global: for replace and matchAll only (test() on it would keep state)
const HAS_CLUE_BLANK = /#idiom\d+#/;
const OTHER_BLANK = '[MASK][MASK][MASK][MASK]';

function fill(text: string, at: number, length: number, candidate: string): Choice {
  const before = text.slice(0, at).replace(CLUE_BLANK, OTHER_BLANK);
  const after = text.slice(at + length).replace(CLUE_BLANK, OTHER_BLANK);
  return { text: before + candidate + after, focus: [before.length, before.length + candidate.length] };
}

const chid: Format = {
  expected: () =>
    'JSON Lines, one object a line: FewCLUE {"content" with one #idiom#, "candidates", "answer"} ' +
    'or CLUE {"content": [passages with #idiomNNNNNN# blanks], "candidates"} (answers in <split>_answer.json)',
  records: jsonLinesRecords,
  parse(value, ctx) {
    const obj = asObject(value);
    const candidates = strings(obj.candidates, 'candidates');
    if (candidates.length < 2) throw new RecordError(`field "candidates" needs at least 2 idioms, got ${candidates.length}`);
    const choicesAt = (text: string, at: number, length: number) => candidates.map((c) => fill(text, at, length, c));
    const checkAnswer = (answer: unknown, what: string): number | null => {
      if (answer === undefined || answer === null) return null;
      const n = typeof answer === 'string' && /^\d+$/.test(answer) ? Number(answer) : answer;
      if (!Number.isInteger(n) || (n as number) < 0 || (n as number) >= candidates.length) {
        throw new RecordError(`${what} must be a candidate index 0…${candidates.length - 1}, got ${describe(answer)}`);
      }
      return n as number;
    };

    if (typeof obj.content === 'string' && !HAS_CLUE_BLANK.test(obj.content)) {
      // FewCLUE: one #idiom# blank, the answer inline.
      const content = obj.content;
      const blanks = content.split(FEW_BLANK).length - 1;
      if (blanks !== 1) throw new RecordError(`field "content" must have exactly one ${FEW_BLANK} blank, found ${blanks}`);
      const at = content.indexOf(FEW_BLANK);
      const answer = checkAnswer(obj.answer, 'field "answer"');
      return [{ id: idOf(obj, ctx), record: { kind: 'multiple-choice', choices: choicesAt(content, at, FEW_BLANK.length), answer } }];
    }

    // CLUE: passages with numbered blanks; one example per blank, answers by tag.
    const passages = typeof obj.content === 'string' ? [obj.content] : strings(obj.content, 'content');
    const inline = obj.answers ?? obj.answer;
    const items: ParsedItem[] = [];
    let order = 0;
    for (const passage of passages) {
      for (const m of passage.matchAll(CLUE_BLANK)) {
        const tag = m[0];
        try {
          let answer: number | null = null;
          if (inline && typeof inline === 'object' && !Array.isArray(inline)) {
            answer = checkAnswer((inline as Record<string, unknown>)[tag], `answer of ${tag}`);
          } else if (Array.isArray(inline)) {
            answer = checkAnswer(inline[order], `answer #${order} (${tag})`);
          } else if (ctx.chidAnswers) {
            answer = checkAnswer(ctx.chidAnswers.get(tag), `answer of ${tag} in the answer file`);
            if (answer === null) throw new RecordError(`blank ${tag} has no answer in the answer file`);
          }
          items.push({ id: tag, record: { kind: 'multiple-choice', choices: choicesAt(passage, m.index!, tag.length), answer } });
        } catch (err) {
          if (!(err instanceof RecordError)) throw err;
          items.push({ error: err.message });
        }
        order++;
      }
    }
    if (order === 0) throw new RecordError('field "content" has no #idiom…# blank');
    return items;
  },
};

// ---------------------------------------------------------------------------
// c3: [[context lines…], [{question, choice[], answer}], id]; one example per question,
// each option read as (context, question + option).

/**
 * Whether the first element of a top-level array is a C3 record (the file is
 * an array of them) rather than the context of a single record: a record's
 * element 1 is its questions array, a context's element 1 a line of text. A
 * first element that is not valid JSON is taken as a broken record.
 */
const isC3Record = (first: RawRecord) => !('value' in first) || (Array.isArray(first.value) && Array.isArray(first.value[1]));

const c3: Format = {
  expected: () => 'one JSON array of C3 records [[context…], [{question, choice[], answer}], id]',
  async *records(lines) {
    yield [...jsonValues(await wholeText(lines), isC3Record)];
  },
  parse(value, ctx) {
    if (!Array.isArray(value) || value.length < 2) {
      throw new RecordError(`expected [[context…], [{question, choice, answer}], id], got ${describe(value)}`);
    }
    const [rawContext, questions, rawId] = value as unknown[];
    let context: string;
    if (typeof rawContext === 'string') {
      ctx.repair('the context (element 0) is a plain string, not an array of lines: read as one line');
      context = rawContext;
    } else {
      context = strings(rawContext, 'context (element 0)').join('\n');
    }
    if (!Array.isArray(questions) || questions.length === 0) {
      throw new RecordError(`element 1 must be a non-empty array of {question, choice, answer}, got ${describe(questions)}`);
    }
    const baseId = typeof rawId === 'string' || typeof rawId === 'number' ? rawId : ctx.index;
    return questions.map((q, k): ParsedItem => {
      try {
        const obj = asObject(q);
        const question = str(obj, 'question');
        const options = strings(obj.choice, 'choice');
        if (options.length < 2) throw new RecordError(`question ${k}: "choice" needs at least 2 options, got ${options.length}`);
        let answer: number | null = null;
        if (typeof obj.answer === 'string' && obj.answer !== '') {
          answer = options.indexOf(obj.answer);
          if (answer < 0) throw new RecordError(`question ${k}: answer ${JSON.stringify(obj.answer)} is not one of its choices`);
        }
        const id = typeof obj.id === 'string' || typeof obj.id === 'number' ? obj.id : `${baseId}-${k}`;
        const choices = options.map((o) => ({ text: context, textB: `${question} ${o}` }));
        return { id, record: { kind: 'multiple-choice', choices, answer } };
      } catch (err) {
        if (!(err instanceof RecordError)) throw err;
        return { error: err.message };
      }
    });
  },
};

// ---------------------------------------------------------------------------
// cmrc2018: SQuAD JSON. The whole file is one object; each qa is a record,
// found at the line of its id.

async function* squadRecords(lines: AsyncIterable<TextLine[]>): AsyncGenerator<RawRecord[]> {
  yield [...squadValues(await wholeText(lines))];
}

function* squadValues(text: string): Generator<RawRecord> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new FileFormatError(`not valid JSON (${(err as Error).message})`);
  }
  const data = (doc as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) throw new FileFormatError(`no top-level "data" array (found ${describe(Array.isArray(doc) ? doc : typeof doc)})`);
  let cursor = 0;
  let line = 1;
  // Advance through the text to each qa's id, so a record reports the line it sits on.
  const lineOf = (id: unknown) => {
    if (typeof id === 'string' || typeof id === 'number') {
      const at = text.indexOf(JSON.stringify(id), cursor);
      if (at >= 0) {
        line += lineAt(text.slice(cursor, at), at - cursor) - 1;
        cursor = at;
      }
    }
    return line;
  };
  for (const article of data) {
    const paragraphs = (article as { paragraphs?: unknown } | null)?.paragraphs;
    if (!Array.isArray(paragraphs)) {
      yield { line, error: 'an entry of "data" has no "paragraphs" array' };
      continue;
    }
    for (const paragraph of paragraphs) {
      const qas = (paragraph as { qas?: unknown } | null)?.qas;
      if (!Array.isArray(qas)) {
        yield { line, error: 'a paragraph has no "qas" array' };
        continue;
      }
      for (const qa of qas) {
        yield { line: lineOf((qa as { id?: unknown } | null)?.id), value: { context: (paragraph as { context?: unknown }).context, qa } };
      }
    }
  }
}

const cmrc2018: Format = {
  expected: () => 'SQuAD JSON {"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}',
  records: squadRecords,
  parse(value, ctx) {
    const { context, qa } = value as { context: unknown; qa: unknown };
    if (typeof context !== 'string') throw new RecordError(`the paragraph's "context" must be a string, got ${describe(context)}`);
    const obj = asObject(qa);
    const question = str(obj, 'question');
    const id = typeof obj.id === 'string' || typeof obj.id === 'number' ? obj.id : '';
    const answers = obj.answers === undefined || obj.answers === null ? [] : obj.answers;
    if (!Array.isArray(answers)) throw new RecordError(`"answers" must be an array, got ${describe(answers)}`);
    if (answers.length === 0) return [{ id, record: { kind: 'span', text: context, question, spans: null } }];
    const spans: CharSpan[] = [];
    const texts: string[] = [];
    for (const a of answers) {
      const ans = asObject(a);
      const answerText = str(ans, 'text');
      texts.push(answerText);
      const start = ans.answer_start;
      // Some released answers have an answer_start a few characters off: take the
      // occurrence of the text nearest to it.
      let at = Number.isInteger(start) && context.startsWith(answerText, start as number) ? (start as number) : -1;
      if (at < 0 && answerText) {
        let best = -1;
        for (let i = context.indexOf(answerText); i >= 0; i = context.indexOf(answerText, i + 1)) {
          if (best < 0 || Math.abs(i - Number(start)) < Math.abs(best - Number(start))) best = i;
        }
        at = best;
      }
      if (at >= 0 && at !== start) {
        ctx.repair(`qa ${JSON.stringify(id)}: answer_start ${describe(start)} does not point at the answer ${JSON.stringify(answerText)}; moved to ${at}, where it occurs`);
      }
      if (at >= 0 && answerText && !spans.some((s) => s.start === at && s.end === at + answerText.length)) {
        spans.push({ label: 'answer', start: at, end: at + answerText.length });
      }
    }
    if (spans.length === 0) throw new RecordError(`qa ${JSON.stringify(id)}: no answer text occurs in its context`);
    return [{ id, record: { kind: 'span', text: context, question, spans, answers: texts } }];
  },
};

// ---------------------------------------------------------------------------
// cluener: {text, label: {type: {entity: [[start, end], …]}}}, END INCLUSIVE.
// Each position is checked against its entity string, which also catches a file
// written with exclusive ends (every check would fail, naming the mismatch).

/** JSON Lines when the first non-blank line is a whole object, else multi-line JSON (pretty-printed copies). */
async function* linesOrValues(lines: AsyncIterable<TextLine[]>): AsyncGenerator<RawRecord[]> {
  const iterator = lines[Symbol.asyncIterator]();
  const head: TextLine[][] = [];
  let first: TextLine | undefined;
  while (first === undefined) {
    const next = await iterator.next();
    if (next.done) break;
    head.push(next.value);
    first = next.value.find((l) => l.tooLong || l.text.trim() !== '');
  }
  let isLines = false;
  if (first !== undefined && !first.tooLong) {
    try {
      const v = JSON.parse(first.text);
      isLines = !!v && typeof v === 'object' && !Array.isArray(v);
    } catch {
      isLines = false;
    }
  }
  // The lines read to decide, then the rest.
  async function* all(): AsyncGenerator<TextLine[]> {
    yield* head;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  if (isLines) yield* jsonLines(all());
  else yield [...jsonValues(await wholeText(all()))];
}

const cluener: Format = {
  expected: () =>
    'CLUENER records {"text", "label": {type: {entity: [[start, end]]}}} (end inclusive), as JSON Lines, concatenated or an array',
  records: linesOrValues,
  parse(value, ctx) {
    const obj = asObject(value);
    const text = str(obj, 'text');
    if (obj.label === undefined || obj.label === null) return [{ id: idOf(obj, ctx), record: { kind: 'span', text, spans: null } }];
    const types = asObject(obj.label);
    const known = ctx.task.labels;
    const spans: CharSpan[] = [];
    for (const [type, entities] of Object.entries(types)) {
      if (known && !known.includes(type)) {
        throw new RecordError(`entity type ${JSON.stringify(type)} is not one of the task's types (${known.join(', ')})`);
      }
      for (const [entity, positions] of Object.entries(asObject(entities))) {
        if (!Array.isArray(positions)) throw new RecordError(`label.${type}.${entity} must be an array of [start, end] pairs`);
        for (const p of positions) {
          if (!Array.isArray(p) || p.length !== 2 || !p.every(Number.isInteger)) {
            throw new RecordError(`label.${type}.${entity}: position ${JSON.stringify(p)} is not a [start, end] pair of integers`);
          }
          const [start, end] = p as [number, number];
          if (start < 0 || end < start || end >= text.length) {
            throw new RecordError(`label.${type}.${entity}: [${start}, ${end}] is outside the text (length ${text.length}; end is inclusive)`);
          }
          const found = text.slice(start, end + 1);
          if (found !== entity) {
            const hint = text.slice(start, end) === entity ? ' — this file looks end-exclusive; CLUENER ends are inclusive' : '';
            throw new RecordError(`label.${type}: [${start}, ${end}] (end inclusive) reads ${JSON.stringify(found)}, not ${JSON.stringify(entity)}${hint}`);
          }
          if (!spans.some((s) => s.label === type && s.start === start && s.end === end + 1)) {
            spans.push({ label: type, start, end: end + 1 });
          }
        }
      }
    }
    return [{ id: idOf(obj, ctx), record: { kind: 'span', text, spans } }];
  },
};

export const FORMATS: Readonly<Record<FormatName, Format>> = { jsonl, cluewsc, csl, chid, c3, cmrc2018, cluener };
