/**
 * Queries: each query word becomes an FTS5 expression of its whole word, its prefix expansion
 * (2+ characters) and its typo neighbours (from ./vocab.ts); the words are ANDed. Ranking is
 * FTS5's BM25 with the field boosts of ./text.ts, where a whole word also matches its own prefix
 * expansion and so scores above a word it is only the prefix of.
 *
 * BM25 costs about 1 us per matching row (per query word), so a query matching more than
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
/** Queries matching more tracks than this are listed by tiers instead of ranked row by row. */
export const RANK_LIMIT = 2000;

const WEIGHTS = FIELDS.map((f) => BOOSTS[f]).join(", ");

/** The normalised, de-duplicated terms `query` is searched for. */
export function queryTerms(query: string, opts: QueryOptions = {}): string[] {
  const text = truncateUtf8(String(query), opts.maxQueryBytes ?? MAX_QUERY_BYTES);
  return [...new Set(terms(text))].slice(0, MAX_QUERY_TERMS);
}

const quote = (t: string) => `"${t.replaceAll('"', '""')}"`;

/** The FTS5 expressions of one term: every expansion, and the whole word only. */
interface TermExpr {
  any: string;
  exact: string | undefined;
}

/** The expressions of `term`, or undefined when no indexed word can match it. */
function expand(vocab: Vocabulary, term: string): TermExpr | undefined {
  const parts: string[] = [];
  const known = vocab.has(term);
  if (known) parts.push(quote(term));
  const prefix = term.length >= MIN_PREFIX_LENGTH;
  if (prefix && vocab.hasPrefix(term)) parts.push(`${quote(term)} *`);
  if (term.length >= MIN_FUZZY_LENGTH && !/^\d+$/.test(term)) {
    const maxDistance = Math.min(MAX_FUZZY, Math.round(term.length * FUZZY));
    for (const w of vocab.fuzzy(term, maxDistance, MAX_FUZZY_TERMS).keys()) {
      if (w === term || (prefix && w.startsWith(term))) continue;
      parts.push(quote(w));
    }
  }
  if (parts.length === 0) return undefined;
  return { any: `(${parts.join(" OR ")})`, exact: known ? quote(term) : undefined };
}

/** Prepared statements of one connection. */
export class QueryStatements {
  readonly ranked: StatementSync;
  readonly ids: StatementSync;
  readonly capped: StatementSync;

  /** Prepare on `db` (an index database of ./store.ts). */
  constructor(db: DatabaseSync) {
    this.ranked = db.prepare(
      `SELECT rowid AS id, bm25(docs, ${WEIGHTS}) AS s FROM docs WHERE docs MATCH ?
       ORDER BY s, rowid LIMIT ?`,
    );
    this.ids = db.prepare("SELECT rowid AS id FROM docs WHERE docs MATCH ? LIMIT ?");
    this.capped = db.prepare(
      "SELECT count(*) AS n FROM (SELECT rowid FROM docs WHERE docs MATCH ? LIMIT ?)",
    );
  }
}

/**
 * The best `limit` matches of `query`, best first (ties by ascending id). Never throws on odd
 * input: a query without any word (empty, only punctuation) has no matches. SQLite errors (a
 * damaged file) do throw.
 */
export function executeQuery(
  st: QueryStatements,
  vocab: Vocabulary,
  query: string,
  limit: number,
  opts: QueryOptions = {},
): SearchResult[] {
  const max = Number.isNaN(limit) ? 0 : Math.max(0, Math.floor(limit));
  if (max === 0) return [];
  const exprs: TermExpr[] = [];
  for (const t of queryTerms(query, opts)) {
    const e = expand(vocab, t.slice(0, MAX_TERM_LENGTH));
    // A word that matches nothing empties an AND query.
    if (!e) return [];
    exprs.push(e);
  }
  if (exprs.length === 0) return [];
  const match = exprs.map((e) => e.any).join(" AND ");
  const sqlLimit = Number.isFinite(max) ? max : -1;
  if (max > RANK_LIMIT || countUpTo(st, match, RANK_LIMIT + 1) <= RANK_LIMIT) {
    const rows = st.ranked.all(match, sqlLimit) as { id: number; s: number }[];
    // bm25() is negative, lower is better.
    return rows.map((r) => ({ id: Number(r.id), score: -r.s || 0 }));
  }
  // Too many matches to rank: whole words in titles and artists first, then the rest. A tier
  // small enough is ranked; scores stay in [tier, tier + 1), so tiers never interleave.
  const out: SearchResult[] = [];
  const seen = new Set<number>();
  const tiers: [string | undefined, number][] = [
    [
      exprs.every((e) => e.exact)
        ? exprs.map((e) => `{title artist} : ${e.exact}`).join(" AND ")
        : undefined,
      2,
    ],
    [match, 1],
  ];
  for (const [expr, tier] of tiers) {
    if (!expr) continue;
    const want = max + seen.size;
    const rows = countUpTo(st, expr, RANK_LIMIT + 1) <= RANK_LIMIT
      ? (st.ranked.all(expr, want) as { id: number; s: number }[])
      : (st.ids.all(expr, want) as { id: number; s?: number }[]);
    for (const r of rows) {
      const id = Number(r.id);
      if (seen.has(id)) continue;
      seen.add(id);
      const relevance = r.s === undefined ? 0 : -r.s || 0;
      out.push({ id, score: tier + relevance / (1 + relevance) });
      if (out.length >= max) return out;
    }
  }
  return out;
}

function countUpTo(st: QueryStatements, match: string, cap: number): number {
  return Number((st.capped.get(match, cap) as { n: number }).n);
}
