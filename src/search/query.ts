/**
 * Query execution over minisearch's inverted index (see ./engine.ts for why not
 * `MiniSearch.search`). Semantics follow minisearch with `combineWith: "AND"`: every query term
 * must match, each through its exact form, a prefix expansion or a fuzzy neighbour; scores are
 * minisearch's BM25+ with its prefix and fuzzy weights, so rankings agree with it.
 */
import { type Engine, internals, type TermData } from "./engine.ts";
import { BOOSTS, FIELDS, MAX_TERM_LENGTH, terms, truncateUtf8 } from "./text.ts";

/** One match: the track id and its relevance (higher is better). */
export interface SearchResult {
  /** The track id (`TrackRecord.id`). */
  id: number;
  /** Relevance, comparable only within one query's results. */
  score: number;
}

/** Tunables of a query; the defaults are what /.search and the CLI use. */
export interface QueryOptions {
  /** Longer queries are cut to this many bytes of UTF-8 (default 1024). */
  maxQueryBytes?: number;
}

/** Queries are cut to this many bytes by default. /.search names are capped at 256 already. */
export const MAX_QUERY_BYTES = 1024;
/** Only the first this many distinct terms of a query are used. */
export const MAX_QUERY_TERMS = 12;
/** Terms at least this long also match as a prefix ("beat" finds "beatles"). */
export const MIN_PREFIX_LENGTH = 2;
/** Terms at least this long (and not all digits) also match with typos. */
export const MIN_FUZZY_LENGTH = 4;
/** Allowed edits per character of a term (0.2: one typo from 4 characters, two from 8). */
export const FUZZY = 0.2;
/** Upper bound of edits, whatever the term length. */
export const MAX_FUZZY = 2;

const PREFIX_WEIGHT = 0.375;
const FUZZY_WEIGHT = 0.45;
const BM25 = { k: 1.2, b: 0.7, d: 0.5 };
const BOOST_BY_ID = FIELDS.map((f) => BOOSTS[f]);

/** The normalised, de-duplicated terms `query` is searched for. */
export function queryTerms(query: string, opts: QueryOptions = {}): string[] {
  const text = truncateUtf8(String(query), opts.maxQueryBytes ?? MAX_QUERY_BYTES);
  return [...new Set(terms(text))].slice(0, MAX_QUERY_TERMS);
}

/** One (derived term, field) posting list and the constant part of its BM25 score. */
interface Postings {
  freqs: Map<number, number>;
  fieldId: number;
  /** expansion weight * field boost * idf */
  weight: number;
  avgLength: number;
}

interface TermPlan {
  lists: Postings[];
  /** Postings to walk when scanning this term. */
  cost: number;
}

function plan(ms: Engine, term: string): TermPlan {
  const m = internals(ms);
  const total = m._documentCount;
  const lists: Postings[] = [];
  let cost = 0;
  const addData = (data: TermData | undefined, weight: number) => {
    if (!data) return;
    for (const [fieldId, freqs] of data) {
      if (freqs.size === 0) continue;
      const df = freqs.size;
      const idf = Math.log(1 + (total - df + 0.5) / (df + 0.5));
      const boost = BOOST_BY_ID[fieldId] ?? 1;
      lists.push({
        freqs,
        fieldId,
        weight: weight * boost * idf,
        avgLength: m._avgFieldLength[fieldId] || 1,
      });
      cost += df;
    }
  };
  addData(m._index.get(term), 1);
  const seen = new Set<string>([term]);
  if (term.length >= MIN_PREFIX_LENGTH) {
    for (const [t, data] of m._index.atPrefix(term)) {
      if (seen.has(t)) continue;
      seen.add(t);
      const distance = t.length - term.length;
      addData(data, PREFIX_WEIGHT * t.length / (t.length + 0.3 * distance));
    }
  }
  if (term.length >= MIN_FUZZY_LENGTH && !/^\d+$/.test(term)) {
    const maxDistance = Math.min(MAX_FUZZY, Math.round(term.length * FUZZY));
    if (maxDistance > 0) {
      for (const [t, [data, distance]] of m._index.fuzzyGet(term, maxDistance)) {
        if (seen.has(t)) continue;
        seen.add(t);
        addData(data, FUZZY_WEIGHT * t.length / (t.length + distance));
      }
    }
  }
  return { lists, cost };
}

/**
 * The best `limit` matches of `query`, best first (ties by ascending id). Never throws on odd
 * input: a query without any word (empty, only punctuation) has no matches.
 */
export function executeQuery(
  ms: Engine,
  query: string,
  limit: number,
  opts: QueryOptions = {},
): SearchResult[] {
  const max = Number.isNaN(limit) ? 0 : Math.max(0, Math.floor(limit));
  if (max === 0 || ms.documentCount === 0) return [];
  const qs = queryTerms(query, opts);
  if (qs.length === 0) return [];
  const plans: TermPlan[] = [];
  for (const t of qs) {
    const p = plan(ms, t.slice(0, MAX_TERM_LENGTH));
    // A word that matches nothing empties an AND query: skip planning the others.
    if (p.cost === 0) return [];
    plans.push(p);
  }
  // Rarest term first: later terms only need to score the shrinking candidate set.
  plans.sort((a, b) => a.cost - b.cost);
  const m = internals(ms);
  const live = m._documentIds;
  const lengths = m._fieldLength;
  const { k, b, d } = BM25;
  const score = (p: Postings, short: number, tf: number): number => {
    const len = lengths.get(short)?.[p.fieldId] ?? 0;
    return p.weight * (d + tf * (k + 1) / (tf + k * (1 - b + b * len / p.avgLength)));
  };
  const scratch = scratchFor(m._nextId);
  const { hits, scores } = scratch;
  // Dead postings (of discarded documents) exist only until the next vacuum.
  const checkLive = m._dirtCount > 0;
  // hits[short] = how many query terms (in plan order) the document matched so far.
  let candidates: number[] = [];
  try {
    for (let j = 0; j < plans.length; j++) {
      const p = plans[j];
      if (j === 0) {
        for (const list of p.lists) {
          for (const [short, tf] of list.freqs) {
            if (checkLive && !live.has(short)) continue;
            if (hits[short] === 0) {
              hits[short] = 1;
              candidates.push(short);
            }
            scores[short] += score(list, short, tf);
          }
        }
      } else if (candidates.length * p.lists.length < p.cost) {
        // Few candidates left: look them up instead of walking long posting lists.
        for (const short of candidates) {
          for (const list of p.lists) {
            const tf = list.freqs.get(short);
            if (tf === undefined) continue;
            hits[short] = j + 1;
            scores[short] += score(list, short, tf);
          }
        }
      } else {
        for (const list of p.lists) {
          for (const [short, tf] of list.freqs) {
            const h = hits[short];
            if (h !== j && h !== j + 1) continue;
            hits[short] = j + 1;
            scores[short] += score(list, short, tf);
          }
        }
      }
      if (j > 0) {
        const kept: number[] = [];
        for (const short of candidates) {
          if (hits[short] === j + 1) kept.push(short);
          else {
            hits[short] = 0;
            scores[short] = 0;
          }
        }
        candidates = kept;
      }
      if (candidates.length === 0) return [];
    }
    return topK(candidates, scores, live, max);
  } finally {
    for (const short of candidates) {
      hits[short] = 0;
      scores[short] = 0;
    }
  }
}

/** Per-document accumulators, reused by every query (searches are synchronous). */
interface Scratch {
  hits: Uint8Array;
  scores: Float64Array;
}
let scratch: Scratch = { hits: new Uint8Array(0), scores: new Float64Array(0) };

function scratchFor(size: number): Scratch {
  if (scratch.hits.length < size) {
    const n = Math.max(size, Math.ceil(scratch.hits.length * 1.5), 1024);
    scratch = { hits: new Uint8Array(n), scores: new Float64Array(n) };
  }
  return scratch;
}

/** The `max` best candidates as results, best first, ties by ascending id. */
function topK(
  candidates: number[],
  scores: Float64Array,
  ids: Map<number, number>,
  max: number,
): SearchResult[] {
  const better = (a: SearchResult, b: SearchResult) =>
    a.score > b.score || (a.score === b.score && a.id < b.id);
  const order = (a: SearchResult, b: SearchResult) => (better(a, b) ? -1 : better(b, a) ? 1 : 0);
  if (candidates.length <= max * 2) {
    return candidates.map((short) => ({ id: ids.get(short)!, score: scores[short] })).sort(order)
      .slice(0, max);
  }
  // A min-heap of the best `max` so far: O(n log max) instead of sorting every match.
  const heap: SearchResult[] = [];
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < heap.length && better(heap[w], heap[l])) w = l;
      if (r < heap.length && better(heap[w], heap[r])) w = r;
      if (w === i) return;
      [heap[i], heap[w]] = [heap[w], heap[i]];
      i = w;
    }
  };
  for (const short of candidates) {
    const score = scores[short];
    if (heap.length === max && score < heap[0].score) continue;
    const item = { id: ids.get(short)!, score };
    if (heap.length < max) {
      heap.push(item);
      for (let i = heap.length - 1; i > 0;) {
        const parent = (i - 1) >> 1;
        if (!better(heap[parent], heap[i])) break;
        [heap[i], heap[parent]] = [heap[parent], heap[i]];
        i = parent;
      }
    } else if (better(item, heap[0])) {
      heap[0] = item;
      down(0);
    }
  }
  return heap.sort(order);
}
