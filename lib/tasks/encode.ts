// Task records → model inputs: [CLS] a [SEP] (b [SEP]) with segment ids 0/1,
// longest-first truncation to maxLength (as Hugging Face's 'longest_first'),
// and character spans → token spans (end inclusive) through the tokenizer's
// character offsets.

import type { Tokenizer } from '../data/tokenizer.js';
import type { CharSpan, Choice, TaskRecord } from './formats.js';
import { RecordError } from './formats.js';
import type { Task } from './registry.js';
import type { EncodedText, Example, TokenSpan } from './types.js';
import { MIN_SEQUENCE_LENGTH } from '../data/sequence-length.js';

export interface Encoded {
  example: Example;
  /** Whether tokens were cut to fit maxLength. */
  truncated: boolean;
  /** Gold spans lost: cut off by truncation, or covering no token (only spaces). */
  droppedSpans: number;
}

/** How many tokens of a and b to keep so that both fit `budget`: trim the longer one first. */
export function longestFirst(aLength: number, bLength: number, budget: number): [number, number] {
  let a = aLength;
  let b = bLength;
  if (a + b <= budget) return [a, b];
  // Trim the longer down to the shorter, then both alternately (b first on ties, as HF).
  const excess = a + b - budget;
  const diff = Math.abs(a - b);
  const first = Math.min(excess, diff);
  if (a > b) a -= first;
  else b -= first;
  const rest = excess - first;
  b -= Math.ceil(rest / 2);
  a -= Math.floor(rest / 2);
  return [Math.max(a, 0), Math.max(b, 0)];
}

/** [CLS] a [SEP] (b [SEP]): segment A (with [CLS] and its [SEP]) is type 0, segment B type 1. */
export function assemble(tok: Tokenizer, a: readonly number[], b?: readonly number[]): EncodedText {
  const ids = [tok.clsId, ...a, tok.sepId];
  const typeIds = new Array<number>(ids.length).fill(0);
  if (b) {
    ids.push(...b, tok.sepId);
    for (let i = 0; i <= b.length; i++) typeIds.push(1);
  }
  return { ids, typeIds };
}

/** One or two texts, truncated longest-first to maxLength. */
export function encodeTexts(tok: Tokenizer, text: string, textB: string | undefined, maxLength: number): { encoded: EncodedText; truncated: boolean } {
  const a = tok.encodeText(text);
  if (textB === undefined) {
    const keep = Math.min(a.length, maxLength - 2);
    return { encoded: assemble(tok, a.slice(0, keep)), truncated: keep < a.length };
  }
  const b = tok.encodeText(textB);
  const [ka, kb] = longestFirst(a.length, b.length, maxLength - 3);
  return { encoded: assemble(tok, a.slice(0, ka), b.slice(0, kb)), truncated: ka < a.length || kb < b.length };
}

/** A single text cut to a window of maxLength - 2 tokens that keeps `focus` (chid: the filled-in idiom), centred. */
function encodeAround(tok: Tokenizer, text: string, focus: [number, number], maxLength: number): { encoded: EncodedText; truncated: boolean } {
  const { ids, offsets } = tok.encodeTextWithOffsets(text);
  const budget = maxLength - 2;
  if (ids.length <= budget) return { encoded: assemble(tok, ids), truncated: false };
  let first = offsets.findIndex(([, e]) => e > focus[0]);
  if (first < 0) first = ids.length - 1;
  let last = first;
  while (last + 1 < ids.length && offsets[last + 1][0] < focus[1]) last++;
  const centre = (first + last) / 2;
  const start = Math.max(0, Math.min(ids.length - budget, Math.round(centre - budget / 2)));
  return { encoded: assemble(tok, ids.slice(start, start + budget)), truncated: true };
}

function encodeChoice(tok: Tokenizer, choice: Choice, maxLength: number) {
  if (choice.focus && choice.textB === undefined) return encodeAround(tok, choice.text, choice.focus, maxLength);
  return encodeTexts(tok, choice.text, choice.textB, maxLength);
}

/**
 * Token span (indices into the text's own tokens, end inclusive) covering the
 * characters [start, end), or null if no token does (spaces, dropped characters).
 * A boundary inside a token (an entity ending mid-WordPiece) widens to that token.
 */
export function charSpanToTokens(offsets: ReadonlyArray<readonly [number, number]>, start: number, end: number): [number, number] | null {
  let first = -1;
  let last = -1;
  for (let t = 0; t < offsets.length; t++) {
    const [s, e] = offsets[t];
    if (e > start && s < end) {
      if (first < 0) first = t;
      last = t;
    } else if (s >= end) {
      break;
    }
  }
  return first < 0 ? null : [first, last];
}

export class Encoder {
  private readonly labelIndex: Map<string, number>;

  constructor(
    readonly task: Task,
    readonly tokenizer: Tokenizer,
    readonly maxLength: number,
  ) {
    if (!Number.isInteger(maxLength) || maxLength < MIN_SEQUENCE_LENGTH) throw new RangeError(`maxLength must be an integer ≥ ${MIN_SEQUENCE_LENGTH}, got ${maxLength}`);
    this.labelIndex = new Map(task.labels.map((l, i) => [l, i]));
  }

  private label(label: string): number {
    const i = this.labelIndex.get(label);
    if (i === undefined) {
      const list = this.task.labels;
      const shown = list.length > 12 ? `${list.slice(0, 12).join(', ')}, … (${list.length} in all)` : list.join(', ');
      throw new RecordError(`label ${JSON.stringify(label)} is not one of ${this.task.name}'s labels (${shown})`);
    }
    return i;
  }

  /** The Example for one record; throws RecordError for an unknown label. */
  encode(record: TaskRecord): Encoded {
    const tok = this.tokenizer;
    switch (record.kind) {
      case 'classification': {
        const label = record.label === null ? -1 : this.label(record.label);
        const { encoded, truncated } = encodeTexts(tok, record.text, record.textB, this.maxLength);
        return { example: { kind: 'classification', ...encoded, label }, truncated, droppedSpans: 0 };
      }
      case 'multilabel': {
        const labels = record.labels === null ? [] : [...new Set(record.labels.map((l) => this.label(l)))].sort((x, y) => x - y);
        const { encoded, truncated } = encodeTexts(tok, record.text, record.textB, this.maxLength);
        return { example: { kind: 'multilabel', ...encoded, labels }, truncated, droppedSpans: 0 };
      }
      case 'multiple-choice': {
        let truncated = false;
        const choices = record.choices.map((c) => {
          const r = encodeChoice(tok, c, this.maxLength);
          truncated ||= r.truncated;
          return r.encoded;
        });
        return { example: { kind: 'multiple-choice', choices, label: record.answer ?? -1 }, truncated, droppedSpans: 0 };
      }
      case 'span':
        return this.encodeSpans(record.text, record.question, record.spans ?? []);
    }
  }

  /** [CLS] (question [SEP]) text [SEP]; offsets into `text`, [0, 0] elsewhere; gold spans as token positions. */
  private encodeSpans(text: string, question: string | undefined, spans: CharSpan[]): Encoded {
    const tok = this.tokenizer;
    const body = tok.encodeTextWithOffsets(text);
    let q: number[] = [];
    let keep: number;
    if (question === undefined) {
      keep = Math.min(body.ids.length, this.maxLength - 2);
    } else {
      q = tok.encodeText(question);
      const [kq, kb] = longestFirst(q.length, body.ids.length, this.maxLength - 3);
      q = q.slice(0, kq);
      keep = kb;
    }
    const kept = body.ids.slice(0, keep);
    const encoded = question === undefined ? assemble(tok, kept) : assemble(tok, q, kept);
    const base = question === undefined ? 1 : q.length + 2; // position of the text's first token
    const offsets: Array<[number, number]> = encoded.ids.map(() => [0, 0]);
    for (let t = 0; t < keep; t++) offsets[base + t] = body.offsets[t];

    const tokenSpans: TokenSpan[] = [];
    let dropped = 0;
    for (const span of spans) {
      const label = this.label(span.label);
      const t = charSpanToTokens(body.offsets, span.start, span.end);
      if (!t || t[1] >= keep) {
        dropped++;
        continue;
      }
      tokenSpans.push({ label, start: base + t[0], end: base + t[1] });
    }
    return {
      example: { kind: 'span', ...encoded, spans: tokenSpans, offsets, text },
      truncated: keep < body.ids.length,
      droppedSpans: dropped,
    };
  }
}
