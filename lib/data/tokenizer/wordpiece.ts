// WordPiece (BERT's WordpieceTokenizer): greedy longest-match-first over the
// vocabulary, '##' marking pieces that continue a word. A word with a position
// no piece matches, or longer than MAX_CHARS_PER_WORD code points, becomes [UNK].
//
// The vocabulary's pieces live in a trie with two roots (0 = word-initial
// pieces, 1 = '##' continuations) whose edges, over UTF-16 code units, sit in
// an open-addressing hash table of flat typed arrays: matching walks the word
// in place, without allocating substrings.

/** Words longer than this many code points become [UNK] (BERT's max_input_chars_per_word). */
export const MAX_CHARS_PER_WORD = 200;

const RE_LONE_SURROGATE = /\p{Cs}/u;

/** Hash slot of the edge (node, unit) in a table of 2^(32 - shift) slots. */
function edgeSlot(node: number, unit: number, shift: number): number {
  return Math.imul((Math.imul(node, 0x2c1b3c6d) ^ unit) + 0x61c88647, 0x9e3779b1) >>> shift;
}

/** A vocabulary's word pieces, for WordPiece matching (token id = index in the token list). */
export class PieceTrie {
  private readonly term: Int32Array; // node → token id, or -1
  private readonly edgeNode: Int32Array; // slot → parent node, or -1 if empty
  private readonly edgeUnit: Uint16Array; // slot → code unit
  private readonly edgeChild: Int32Array; // slot → child node
  private readonly mask: number;
  private readonly shift: number;

  constructor(tokens: readonly string[]) {
    const edges = new Map<number, number>(); // parent * 65536 + unit → child
    const term: number[] = [-1, -1];
    for (let id = 0; id < tokens.length; id++) {
      const token = tokens[id];
      let node: number;
      let from: number;
      if (token.length > 2 && token.startsWith('##')) {
        node = 1;
        from = 2;
      } else if (token.length > 0) {
        node = 0;
        from = 0;
      } else {
        continue;
      }
      // Matching walks UTF-16 code units; a token with a lone surrogate could
      // match half of a pair, where BERT (by code points) never matches it.
      if (RE_LONE_SURROGATE.test(token)) continue;
      for (let j = from; j < token.length; j++) {
        const key = node * 65536 + token.charCodeAt(j);
        let child = edges.get(key);
        if (child === undefined) {
          child = term.length;
          term.push(-1);
          edges.set(key, child);
        }
        node = child;
      }
      if (term[node] < 0) term[node] = id;
    }
    this.term = Int32Array.from(term);
    let bits = 4;
    while (1 << bits < edges.size * 2) bits++;
    const capacity = 1 << bits;
    this.mask = capacity - 1;
    this.shift = 32 - bits;
    this.edgeNode = new Int32Array(capacity).fill(-1);
    this.edgeUnit = new Uint16Array(capacity);
    this.edgeChild = new Int32Array(capacity);
    for (const [key, child] of edges) {
      const parent = Math.floor(key / 65536);
      const unit = key % 65536;
      let h = edgeSlot(parent, unit, this.shift);
      while (this.edgeNode[h] !== -1) h = (h + 1) & this.mask;
      this.edgeNode[h] = parent;
      this.edgeUnit[h] = unit;
      this.edgeChild[h] = child;
    }
  }

  /**
   * Greedy longest-match WordPiece of the word s[start, end), `cps` code
   * points long, appended to `out`; the whole word becomes `unkId` if it is
   * too long or some position has no match.
   */
  encodeWord(s: string, start: number, end: number, cps: number, out: number[], unkId: number): void {
    if (cps > MAX_CHARS_PER_WORD) {
      out.push(unkId);
      return;
    }
    const { term, edgeNode, edgeUnit, edgeChild, mask, shift } = this;
    const mark = out.length;
    let pos = start;
    while (pos < end) {
      let node = pos === start ? 0 : 1;
      let bestId = -1;
      let bestEnd = -1;
      for (let j = pos; j < end; j++) {
        const unit = s.charCodeAt(j);
        let h = edgeSlot(node, unit, shift);
        let child = -1;
        for (let p = edgeNode[h]; p !== -1; p = edgeNode[h]) {
          if (p === node && edgeUnit[h] === unit) {
            child = edgeChild[h];
            break;
          }
          h = (h + 1) & mask;
        }
        if (child < 0) break;
        node = child;
        const id = term[node];
        if (id >= 0) {
          bestId = id;
          bestEnd = j + 1;
        }
      }
      if (bestId < 0) {
        out.length = mark;
        out.push(unkId);
        return;
      }
      out.push(bestId);
      pos = bestEnd;
    }
  }
}

