/**
 * The indexed words, in memory, for typo-tolerant lookups.
 *
 * Hand-written because SQLite FTS5 (where the postings live, see ./store.ts) has no fuzzy
 * matching, and keeping minisearch's radix tree for it is what cost the memory (see the README).
 * The words sit in one sorted array; a Levenshtein walk visits it as the trie it implies (the
 * words sharing a prefix are one contiguous run), pruning every prefix already too far from the
 * query. New words wait in a small unsorted side list, merged in once it grows.
 */

/** Words added since the last merge, at most this share of the sorted ones (and 4096). */
const MERGE_RATIO = 8;
const MERGE_MIN = 4096;

/** A growing set of words with exact, prefix and fuzzy lookups. */
export class Vocabulary {
  #sorted: string[];
  #extra: string[] = [];
  #extraSet = new Set<string>();

  /** `words` in any order, without duplicates. */
  constructor(words: string[] = []) {
    // Already sorted by SQLite (code point order): TimSort finds the runs in linear time.
    this.#sorted = words.sort();
  }

  /** Number of words. */
  get size(): number {
    return this.#sorted.length + this.#extra.length;
  }

  /** Whether `word` is known. */
  has(word: string): boolean {
    const s = this.#sorted;
    const i = lowerBound(s, word);
    return (i < s.length && s[i] === word) || this.#extraSet.has(word);
  }

  /** Add `word` (a no-op when known). */
  add(word: string): void {
    if (this.has(word)) return;
    this.#extra.push(word);
    this.#extraSet.add(word);
    if (this.#extra.length >= Math.max(MERGE_MIN, this.#sorted.length / MERGE_RATIO)) this.#merge();
  }

  #merge(): void {
    const extra = this.#extra.sort();
    const s = this.#sorted;
    const out = new Array<string>(s.length + extra.length);
    let i = 0, j = 0, k = 0;
    while (i < s.length && j < extra.length) out[k++] = s[i] < extra[j] ? s[i++] : extra[j++];
    while (i < s.length) out[k++] = s[i++];
    while (j < extra.length) out[k++] = extra[j++];
    this.#sorted = out;
    this.#extra = [];
    this.#extraSet.clear();
  }

  /** Whether some word starts with `prefix` (the word itself included). */
  hasPrefix(prefix: string): boolean {
    const s = this.#sorted;
    const i = lowerBound(s, prefix);
    if (i < s.length && s[i].startsWith(prefix)) return true;
    for (const w of this.#extra) if (w.startsWith(prefix)) return true;
    return false;
  }

  /**
   * Words within `maxDistance` edits (Levenshtein: insert, delete, substitute) of `term`, with
   * their distance; `term` itself included when known. At most `max` words, the closest first.
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
    // Visit the words of s[lo, hi), which share their first `depth` characters.
    const visit = (lo: number, hi: number, depth: number) => {
      const prev = rows[depth];
      let i = lo;
      if (s[i].length === depth) {
        if (prev[n] <= maxDistance) found.push([s[i], prev[n]]);
        i++;
      }
      while (i < hi) {
        const c = s[i].charCodeAt(depth);
        const j = runEnd(s, i, hi, depth, c);
        const row = rowAt(depth + 1);
        row[0] = Math.min(depth + 1, cap);
        let best = row[0];
        for (let k = 1; k <= n; k++) {
          const v = Math.min(
            prev[k - 1] + (q[k - 1] === c ? 0 : 1),
            prev[k] + 1,
            row[k - 1] + 1,
            cap,
          );
          row[k] = v;
          if (v < best) best = v;
        }
        if (best <= maxDistance) visit(i, j, depth + 1);
        i = j;
      }
    };
    if (s.length > 0) visit(0, s.length, 0);
    for (const w of this.#extra) {
      const d = distance(term, w, maxDistance);
      if (d <= maxDistance) found.push([w, d]);
    }
    if (found.length > max) found.sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    return new Map(found.length > max ? found.slice(0, max) : found);
  }
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
