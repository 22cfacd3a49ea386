/**
 * The indexed words and their document frequencies, in memory, for typo-tolerant lookups and
 * the ranking.
 *
 * Hand-written because SQLite FTS5 (where the postings live, see ./store.ts) has no fuzzy
 * matching, and its BM25 counts the documents of every query word by walking its whole posting
 * list (17 ms for "the" at a million tracks), where this list answers at once. Keeping
 * minisearch's radix tree instead is what cost the memory (see the README). The words sit in one
 * sorted array with their counts beside it; a Levenshtein walk visits the array as the trie it
 * implies (the words sharing a prefix are one contiguous run), pruning every prefix already too
 * far from the query. New words wait in a small side map, merged in once it grows.
 */

/** Words added since the last merge, at most this share of the sorted ones (and 4096). */
const MERGE_RATIO = 8;
const MERGE_MIN = 4096;

/** A growing set of words, each with the number of documents holding it. */
export class Vocabulary {
  #sorted: string[];
  /** The sorted words as a trie, for fuzzy walks; built at the first one, dropped by a merge. */
  #trie: Trie | undefined;
  #counts: Int32Array;
  #extra = new Map<string, number>();

  /** `words` without duplicates, `counts[i]` the documents holding `words[i]` (default 1). */
  constructor(words: string[] = [], counts?: ArrayLike<number>) {
    const pairs = words.map((w, i) => [w, counts?.[i] ?? 1] as const);
    // Already sorted by SQLite (code point order): TimSort finds the runs in linear time.
    pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.#sorted = pairs.map((p) => p[0]);
    this.#counts = Int32Array.from(pairs, (p) => p[1]);
  }

  /** Number of words (including those no document holds any more). */
  get size(): number {
    return this.#sorted.length + this.#extra.size;
  }

  #index(word: string): number {
    const s = this.#sorted;
    const i = lowerBound(s, word);
    return i < s.length && s[i] === word ? i : -1;
  }

  /** Documents holding `word` (0 when unknown). */
  count(word: string): number {
    const i = this.#index(word);
    return i >= 0 ? this.#counts[i] : this.#extra.get(word) ?? 0;
  }

  /** Whether some document holds `word`. */
  has(word: string): boolean {
    return this.count(word) > 0;
  }

  /** One more document holds `word`. */
  add(word: string): void {
    const i = this.#index(word);
    if (i >= 0) {
      this.#counts[i]++;
      return;
    }
    this.#extra.set(word, (this.#extra.get(word) ?? 0) + 1);
    if (this.#extra.size >= Math.max(MERGE_MIN, this.#sorted.length / MERGE_RATIO)) this.#merge();
  }

  /** One document fewer holds `word`. */
  remove(word: string): void {
    const i = this.#index(word);
    if (i >= 0) {
      if (this.#counts[i] > 0) this.#counts[i]--;
      return;
    }
    const n = this.#extra.get(word);
    if (n !== undefined && n > 0) this.#extra.set(word, n - 1);
  }

  /** `delta` more (or, negative, fewer) documents hold `word`; counts stop at zero. */
  adjust(word: string, delta: number): void {
    if (delta === 0) return;
    const i = this.#index(word);
    if (i >= 0) {
      this.#counts[i] = Math.max(0, this.#counts[i] + delta);
      return;
    }
    const n = Math.max(0, (this.#extra.get(word) ?? 0) + delta);
    if (n === 0 && !this.#extra.has(word)) return;
    this.#extra.set(word, n);
    if (this.#extra.size >= Math.max(MERGE_MIN, this.#sorted.length / MERGE_RATIO)) this.#merge();
  }

  #merge(): void {
    const extra = [...this.#extra.keys()].sort();
    const s = this.#sorted;
    const c = this.#counts;
    const n = s.length + extra.length;
    const out = new Array<string>(n);
    const counts = new Int32Array(n);
    let i = 0, j = 0, k = 0;
    while (i < s.length || j < extra.length) {
      if (j >= extra.length || (i < s.length && s[i] < extra[j])) {
        counts[k] = c[i];
        out[k++] = s[i++];
      } else {
        counts[k] = this.#extra.get(extra[j])!;
        out[k++] = extra[j++];
      }
    }
    this.#sorted = out;
    this.#trie = undefined;
    this.#counts = counts;
    this.#extra.clear();
  }

  /** Whether some document holds a word starting with `prefix` (the word itself included). */
  hasPrefix(prefix: string): boolean {
    return this.withPrefix(prefix, 1).length > 0;
  }

  /** Up to `max` held words starting with `prefix` (the word itself included), in no order. */
  withPrefix(prefix: string, max: number): string[] {
    const out: string[] = [];
    const s = this.#sorted;
    for (let i = lowerBound(s, prefix); i < s.length && out.length < max; i++) {
      if (!s[i].startsWith(prefix)) break;
      if (this.#counts[i] > 0) out.push(s[i]);
    }
    for (const [w, n] of this.#extra) {
      if (out.length >= max) break;
      if (n > 0 && w.startsWith(prefix)) out.push(w);
    }
    return out;
  }

  /**
   * Held words within `maxDistance` edits (Levenshtein: insert, delete, substitute) of `term`,
   * with their distance; `term` itself included when held. At most `max`, the closest first.
   */
  fuzzy(term: string, maxDistance: number, max = Infinity): Map<string, number> {
    const found: [string, number][] = [];
    const n = term.length;
    const q = new Uint16Array(n);
    for (let i = 0; i < n; i++) q[i] = term.charCodeAt(i);
    // rows[d] is the edit-distance row after the first d characters of the current prefix.
    const rows: Uint8Array[] = [];
    const cap = Math.min(255, maxDistance + 1);
    const row0 = new Uint8Array(n + 1);
    for (let j = 0; j <= n; j++) row0[j] = Math.min(j, cap);
    rows.push(row0);
    const rowAt = (depth: number): Uint8Array => {
      while (rows.length <= depth) rows.push(new Uint8Array(n + 1));
      return rows[depth];
    };
    const s = this.#sorted;
    const counts = this.#counts;
    const { chars, first, children, word } = this.#trie ??= buildTrie(s);
    // Visit the node of a prefix of `depth` characters whose edit-distance row is rows[depth].
    // Only the band of cells within maxDistance of the diagonal can stay under it; the cell
    // just past the band is set to the cap, so the next row reads no stale value.
    const visit = (node: number, depth: number) => {
      const prev = rows[depth];
      const w = word[node];
      if (w >= 0 && depth + maxDistance >= n && prev[n] <= maxDistance && counts[w] > 0) {
        found.push([s[w], prev[n]]);
      }
      if (depth >= n + maxDistance) return;
      const from = Math.max(1, depth + 1 - maxDistance);
      const to = Math.min(n, depth + 1 + maxDistance);
      const row = rowAt(depth + 1);
      const first0 = depth + 1 < cap ? depth + 1 : cap;
      for (let child = first[node], end = child + children[node]; child < end; child++) {
        const c = chars[child];
        row[0] = first0;
        if (from > 1) row[from - 1] = cap;
        let best = first0;
        for (let k = from; k <= to; k++) {
          let v = prev[k - 1] + (q[k - 1] === c ? 0 : 1);
          const del = prev[k] + 1;
          if (del < v) v = del;
          const ins = row[k - 1] + 1;
          if (ins < v) v = ins;
          if (v > cap) v = cap;
          row[k] = v;
          if (v < best) best = v;
        }
        if (to < n) row[to + 1] = cap;
        if (best <= maxDistance) visit(child, depth + 1);
      }
    };
    if (s.length > 0) visit(0, 0);
    for (const [w, count] of this.#extra) {
      if (count === 0) continue;
      const d = distance(term, w, maxDistance);
      if (d <= maxDistance) found.push([w, d]);
    }
    if (found.length > max) found.sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    return new Map(found.length > max ? found.slice(0, max) : found);
  }
}

/**
 * The words of a sorted list as a trie in flat arrays (node 0 is the root, the empty prefix):
 * the children of a node are contiguous, in character order, so a walk meets the words in the
 * list's order. Walking it touches a few typed arrays instead of the strings themselves: 3-5x
 * faster than walking the sorted list as an implied trie.
 */
interface Trie {
  /** The last character of each node's prefix (UTF-16 unit). */
  chars: Uint16Array;
  /** Each node's first child. */
  first: Int32Array;
  /** Each node's number of children. */
  children: Int32Array;
  /** The index in the list of the word each node spells, or -1. */
  word: Int32Array;
}

function buildTrie(s: string[]): Trie {
  // One node per distinct prefix: each word adds those past its common prefix with the last.
  let nodes = 1;
  for (let i = 0; i < s.length; i++) {
    const w = s[i];
    const prev = i > 0 ? s[i - 1] : "";
    let k = 0;
    while (k < prev.length && k < w.length && prev.charCodeAt(k) === w.charCodeAt(k)) k++;
    nodes += w.length - k;
  }
  const chars = new Uint16Array(nodes);
  const first = new Int32Array(nodes);
  const children = new Int32Array(nodes);
  const word = new Int32Array(nodes).fill(-1);
  let next = 1;
  // The node for s[lo, hi), which share their first `depth` characters.
  const build = (node: number, lo: number, hi: number, depth: number) => {
    let i = lo;
    if (s[i].length === depth) word[node] = i++;
    let n = 0;
    for (let j = i; j < hi; j = runEnd(s, j, hi, depth, s[j].charCodeAt(depth))) n++;
    first[node] = next;
    children[node] = n;
    let child = next;
    next += n;
    while (i < hi) {
      const c = s[i].charCodeAt(depth);
      const j = runEnd(s, i, hi, depth, c);
      chars[child] = c;
      build(child++, i, j, depth + 1);
      i = j;
    }
  };
  if (s.length > 0) build(0, 0, s.length, 0);
  return { chars, first, children, word };
}

/** First index of `s` whose word is >= `word`. */
function lowerBound(s: string[], word: string): number {
  let lo = 0, hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (s[mid] < word) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** End of the run in s[i, hi) whose character at `depth` is `c` (all share the prefix). */
function runEnd(s: string[], i: number, hi: number, depth: number, c: number): number {
  // Gallop, then bisect: most runs are short, a few (first letters) are long.
  let bound = 1;
  while (i + bound < hi && s[i + bound].charCodeAt(depth) === c) bound *= 2;
  let a = i + (bound >> 1) + 1;
  let b = Math.min(i + bound, hi);
  while (a < b) {
    const mid = (a + b) >>> 1;
    if (s[mid].charCodeAt(depth) === c) a = mid + 1;
    else b = mid;
  }
  return a;
}

/** Levenshtein distance of `a` and `b`, or `max + 1` once it is certainly above `max`. */
export function distance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let prev = new Array<number>(b.length + 1);
  let cur = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        prev[j - 1] + (a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1),
        prev[j] + 1,
        cur[j - 1] + 1,
      );
      if (cur[j] < best) best = cur[j];
    }
    if (best > max) return max + 1;
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}
