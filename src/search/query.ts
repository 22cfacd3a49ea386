/**
 * Queries: each query word becomes an FTS5 expression of its whole word, its prefix expansion
 * (2+ characters) and its typo neighbours (from ./vocab.ts); the words are ANDed. FTS5 finds
 * the matches; they are ranked here with minisearch's BM25+ (the ranking musicfs always had):
 * field boosts of ./text.ts, a prefix or typo match weighing less than the whole word, and
 * document frequencies from the word list in memory. FTS5's own bm25() is not used: it counts
 * each query word's documents by walking its whole posting list, 17 ms for "the" at a million
 * tracks.
 *
 * Ranking reads each match's fields, 5-8 us a row at a million tracks, so a query matching more than
 * {@link RANK_LIMIT} tracks (one common word at a million tracks matches half a million) is not
 * ranked row by row: it lists whole-word matches in titles and artists first, then the others;
 * each tier ranked when it is small enough, else in track id order with one score.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { BOOSTS, FIELDS, MAX_TERM_LENGTH, terms, truncateUtf8 } from "./text.ts";
import type { Vocabulary } from "./vocab.ts";

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
/** Most typo neighbours a term expands to (the closest are kept). */
export const MAX_FUZZY_TERMS = 64;
/** The prefix lengths FTS5 keeps an index for (`prefix = '2 3'` in ./store.ts). */
const MAX_INDEXED_PREFIX = 3;
/** A longer prefix is expanded to the words it covers when there are at most this many. */
export const MAX_PREFIX_TERMS = 48;
/** A query word held by more than this share of the tracks is "common" (see executeQuery). */
const COMMON_SHARE = 0.02;
/** Queries matching more tracks than this are listed by tiers instead of ranked row by row. */
export const RANK_LIMIT = 1000;

const PREFIX_WEIGHT = 0.375;
const FUZZY_WEIGHT = 0.45;
const BM25 = { k: 1.2, b: 0.7, d: 0.5 };
const BOOST_BY_FIELD = FIELDS.map((f) => BOOSTS[f]);
const COLUMNS = FIELDS.join(", ");

/** The normalised, de-duplicated terms `query` is searched for. */
export function queryTerms(query: string, opts: QueryOptions = {}): string[] {
  const text = truncateUtf8(String(query), opts.maxQueryBytes ?? MAX_QUERY_BYTES);
  return [...new Set(terms(text))].slice(0, MAX_QUERY_TERMS);
}

const quote = (t: string) => `"${t.replaceAll('"', '""')}"`;

/** One query term: its FTS5 expressions and the weight of each word it matches. */
interface TermPlan {
  term: string;
  /** Every expansion. */
  any: string;
  /** The whole word only, when some document holds it. */
  exact: string | undefined;
  /** Weights of the listed words (whole word 1, prefix and typo words less). */
  words: Map<string, number>;
  /** Prefix matched by FTS5 itself (not listed in `words`). */
  openPrefix: boolean;
  /** Documents it may match at most (sum over its words; Infinity with an open prefix). */
  cost: number;
}

const prefixWeight = (word: string, term: string) =>
  PREFIX_WEIGHT * word.length / (word.length + 0.3 * (word.length - term.length));

/** The plan of `term`, or undefined when no indexed word can match it. */
function plan(vocab: Vocabulary, term: string): TermPlan | undefined {
  const parts: string[] = [];
  const words = new Map<string, number>();
  const known = vocab.has(term);
  if (known) {
    parts.push(quote(term));
    words.set(term, 1);
  }
  let openPrefix = false;
  if (term.length >= MIN_PREFIX_LENGTH) {
    // FTS5 answers a prefix longer than its prefix indexes by merging the posting lists of
    // every word it covers, whole, before the AND can skip: at a million tracks, 20-50 ms for
    // "rock". The words themselves are each skipped through: listed when there are few.
    const listed = term.length > MAX_INDEXED_PREFIX
      ? vocab.withPrefix(term, MAX_PREFIX_TERMS + 1)
      : undefined;
    if (listed && listed.length <= MAX_PREFIX_TERMS) {
      for (const w of listed) {
        if (words.has(w)) continue;
        parts.push(quote(w));
        words.set(w, prefixWeight(w, term));
      }
    } else if (vocab.hasPrefix(term)) {
      parts.push(`${quote(term)} *`);
      openPrefix = true;
    }
  }
  if (term.length >= MIN_FUZZY_LENGTH && !/^\d+$/.test(term)) {
    const maxDistance = Math.min(MAX_FUZZY, Math.round(term.length * FUZZY));
    for (const [w, d] of vocab.fuzzy(term, maxDistance, MAX_FUZZY_TERMS)) {
      if (words.has(w) || (openPrefix && w.startsWith(term))) continue;
      parts.push(quote(w));
      words.set(w, FUZZY_WEIGHT * w.length / (w.length + d));
    }
  }
  // The open prefix covers the whole word: matching it too would only merge its posting list
  // (the largest, for "the") into the prefix's.
  if (openPrefix && known) parts.shift();
  if (parts.length === 0) return undefined;
  let cost = openPrefix ? Infinity : 0;
  for (const w of words.keys()) cost += vocab.count(w);
  return {
    term,
    any: `(${parts.join(" OR ")})`,
    exact: known ? quote(term) : undefined,
    words,
    openPrefix,
    cost,
  };
}

/** Prepared statements of one connection. */
export class QueryStatements {
  /** Matching rows with their fields. */
  readonly rows: StatementSync;
  /** Matching ids only. */
  readonly ids: StatementSync;
  /** The fields of the rows of a JSON array of ids (FTS5's content table: c0.. in FIELDS order). */
  readonly content: StatementSync;

  /** Prepare on `db` (an index database of ./store.ts). */
  constructor(db: DatabaseSync) {
    this.rows = db.prepare(
      `SELECT rowid AS id, ${COLUMNS} FROM docs WHERE docs MATCH ? LIMIT ?`,
    );
    this.rows.setReturnArrays(true);
    this.ids = db.prepare("SELECT rowid AS id FROM docs WHERE docs MATCH ? LIMIT ?");
    this.content = db.prepare(
      `SELECT id, ${FIELDS.map((_, i) => `c${i}`).join(", ")} FROM docs_content ` +
        "WHERE id IN (SELECT value FROM json_each(?))",
    );
    this.content.setReturnArrays(true);
  }
}

/** What ranking needs besides the rows. */
export interface RankContext {
  vocab: Vocabulary;
  /** Documents in the index. */
  documents: number;
  /** Average words per field (FIELDS order). */
  avgLength: ArrayLike<number>;
}

type Row = [number | bigint, ...(string | null)[]];

/** The weight of `word` as a match of `p`, or undefined. */
function weightOf(p: TermPlan, word: string): number | undefined {
  const weight = p.words.get(word);
  if (weight !== undefined || !p.openPrefix || !word.startsWith(p.term)) return weight;
  return word === p.term ? 1 : prefixWeight(word, p.term);
}

/** Whether some field of `row` holds a match of `p` (what FTS5 checks for one AND operand). */
function rowMatches(row: Row, p: TermPlan): boolean {
  for (let f = 1; f < row.length; f++) {
    const text = row[f] as string | null;
    if (!text) continue;
    for (const w of text.split(" ")) if (weightOf(p, w) !== undefined) return true;
  }
  return false;
}

/** BM25+ scores of `rows` for `plans`, as minisearch computes them. */
function score(rows: Row[], plans: TermPlan[], ctx: RankContext): SearchResult[] {
  const { k, b, d } = BM25;
  const idf = new Map<string, number>();
  const idfOf = (w: string) => {
    let v = idf.get(w);
    if (v === undefined) {
      const df = Math.max(1, ctx.vocab.count(w));
      v = Math.log(1 + (ctx.documents - df + 0.5) / (df + 0.5));
      idf.set(w, v);
    }
    return v;
  };
  const out: SearchResult[] = new Array(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r];
    let total = 0;
    for (let f = 0; f < FIELDS.length; f++) {
      const text = row[f + 1] as string | null;
      if (!text) continue;
      const tokens = text.split(" ");
      const norm = k * (1 - b + b * tokens.length / (ctx.avgLength[f] || 1));
      const boost = BOOST_BY_FIELD[f];
      for (const p of plans) {
        // Each distinct matching word once, with its frequency in the field.
        for (let t = 0; t < tokens.length; t++) {
          const w = tokens[t];
          const weight = weightOf(p, w);
          if (weight === undefined) continue;
          if (tokens.indexOf(w) !== t) continue;
          let tf = 1;
          for (let u = t + 1; u < tokens.length; u++) if (tokens[u] === w) tf++;
          total += weight * boost * idfOf(w) * (d + tf * (k + 1) / (tf + norm));
        }
      }
    }
    out[r] = { id: Number(row[0]), score: total };
  }
  return out;
}

const byScore = (a: SearchResult, b: SearchResult) => b.score - a.score || a.id - b.id;

/**
 * The best `limit` matches of `query`, best first (ties by ascending id). Never throws on odd
 * input: a query without any word (empty, only punctuation) has no matches. SQLite errors (a
 * damaged file) do throw.
 */
export function executeQuery(
  st: QueryStatements,
  ctx: RankContext,
  query: string,
  limit: number,
  opts: QueryOptions = {},
): SearchResult[] {
  const max = Number.isNaN(limit) ? 0 : Math.max(0, Math.floor(limit));
  if (max === 0) return [];
  const plans: TermPlan[] = [];
  for (const t of queryTerms(query, opts)) {
    const p = plan(ctx.vocab, t.slice(0, MAX_TERM_LENGTH));
    // A word that matches nothing empties an AND query.
    if (!p) return [];
    plans.push(p);
  }
  if (plans.length === 0) return [];
  const match = plans.map((p) => p.any).join(" AND ");
  // Words held by a large share of the library ("the", "a", "rock") cost FTS5 most of a query
  // ANDed with rare ones: when the rare ones alone match few tracks, the common ones are
  // checked here on the fields read for the ranking anyway.
  const rarest = Math.min(...plans.map((p) => p.cost));
  const common = plans.filter((p) => p.cost > ctx.documents * COMMON_SHARE && p.cost > 20 * rarest);
  if (common.length > 0 && max <= RANK_LIMIT) {
    const rare = plans.filter((p) => !common.includes(p)).map((p) => p.any).join(" AND ");
    const found = idsUpTo(st, rare, RANK_LIMIT + 1);
    if (found.length <= RANK_LIMIT) {
      const rows = rowsOf(st, found).filter((row) => common.every((p) => rowMatches(row, p)));
      return score(rows, plans, ctx).sort(byScore).slice(0, max);
    }
  }
  if (max > RANK_LIMIT) {
    return score(st.rows.all(match, -1) as unknown as Row[], plans, ctx).sort(byScore).slice(
      0,
      max,
    );
  }
  // The ids first (FTS5 reads no fields for them): cheap next to fetching rows that would not
  // be ranked; the fields of few enough are then read by id, not by matching again.
  const found = idsUpTo(st, match, RANK_LIMIT + 1);
  if (found.length <= RANK_LIMIT) {
    return score(rowsOf(st, found), plans, ctx).sort(byScore).slice(0, max);
  }
  // Too many matches to rank: whole words in titles and artists first, then the rest. A tier
  // small enough is ranked; scores stay in [tier, tier + 1), so tiers never interleave.
  const out: SearchResult[] = [];
  const seen = new Set<number>();
  const tiers: [string | undefined, number][] = [
    [
      plans.every((p) => p.exact)
        ? plans.map((p) => `{title artist} : ${p.exact}`).join(" AND ")
        : undefined,
      2,
    ],
    [match, 1],
  ];
  for (const [expr, tier] of tiers) {
    if (!expr) continue;
    const want = max + seen.size;
    // The ids of the whole match were read above: enough of them unless a tier came first.
    const some = expr === match ? found : idsUpTo(st, expr, RANK_LIMIT + 1);
    const listed = expr !== match && some.length <= RANK_LIMIT
      ? score(rowsOf(st, some), plans, ctx).sort(byScore)
      : (some.length >= want ? some.slice(0, want) : idsUpTo(st, expr, want))
        .map((id) => ({ id, score: 0 }));
    for (const r of listed) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      out.push({ id: r.id, score: tier + r.score / (1 + r.score) });
      if (out.length >= max) return out;
    }
  }
  return out;
}

/** The ids of the first `cap` rows matching `match`. */
function idsUpTo(st: QueryStatements, match: string, cap: number): number[] {
  return (st.ids.all(match, cap) as { id: number }[]).map((r) => Number(r.id));
}

/** The rows (id and fields) of `ids`. */
function rowsOf(st: QueryStatements, ids: number[]): Row[] {
  if (ids.length === 0) return [];
  return st.content.all(JSON.stringify(ids)) as unknown as Row[];
}
