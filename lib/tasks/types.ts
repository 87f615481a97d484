// The shared vocabulary of supervised tasks: what a task is, what one encoded
// example of each kind looks like, and what a prediction is. Formats (loaders)
// produce examples; heads and batching consume them; metrics compare predictions.

/** The head a task trains: owned by the binding layer (the native side builds it). */
export type { HeadKind } from '../../bindings/native.js';

/** Token ids of one sequence: [CLS] … [SEP] (… [SEP]) with segment ids. */
export interface EncodedText {
  ids: number[];
  typeIds: number[];
}

/** A span of tokens, end inclusive, with the label index it carries. */
export interface TokenSpan {
  label: number;
  start: number;
  end: number;
}

export type Example =
  | (EncodedText & { kind: 'classification'; label: number })
  | (EncodedText & { kind: 'multilabel'; labels: number[] })
  | { kind: 'multiple-choice'; choices: EncodedText[]; label: number }
  | (EncodedText & {
      kind: 'span';
      spans: TokenSpan[];
      /** [start, end) character offsets in `text` of each token; [0, 0] for special tokens. */
      offsets: Array<[number, number]>;
      text: string;
    });

/** An example plus where it came from (for error messages and predictions). */
export interface LoadedExample {
  example: Example;
  /** 1-based line of the record in its file (the first line of a multi-line record). */
  line: number;
  /** The record's id when the format has one, else its index in the file. */
  id: string | number;
  /**
   * Reference answer texts (cmrc2018), so EM/F1 compare against the official
   * answers even when truncation dropped a gold span. Optional extension.
   */
  answers?: string[];
}

/** A record that could not be used: skipped, counted, reported with file:line. */
export interface RecordProblem {
  file: string;
  line: number;
  message: string;
}

/** A prediction for one example, in the task's own terms. */
export type Prediction =
  | { kind: 'classification'; label: number; scores: number[] }
  | { kind: 'multilabel'; labels: number[]; scores: number[] }
  | { kind: 'multiple-choice'; label: number; scores: number[] }
  /** spans as token indices (end inclusive) and as characters of the text ([start, end) offsets). */
  | { kind: 'span'; spans: Array<TokenSpan & { score: number; charStart: number; charEnd: number; text: string }> };
