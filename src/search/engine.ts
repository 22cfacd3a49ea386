/**
 * minisearch, configured for tracks, and the parts of its internals this module reads.
 *
 * minisearch keeps the inverted index (a radix tree with prefix and fuzzy lookup) and owns
 * adding and discarding documents. Three things are done here against its internal fields
 * instead of its public API, because the public API cannot meet the goals:
 * - queries: `MiniSearch.search` scores and allocates a result object for every document that
 *   matches any query term, then sorts them all; with common words ("the", "love") under AND
 *   that measured p99 90-130 ms at 100k tracks. {@link ./query.ts} intersects rarest-first;
 * - snapshots: `toJSON` + `JSON.stringify` block the event loop for ~0.9 s at 100k tracks;
 *   {@link ./snapshot.ts} streams the same JSON in slices;
 * - loading: `loadJS` blocks ~0.3 s and `loadJSAsync` takes ~2.4 s; the loader here builds the
 *   same maps in slices.
 * The version is pinned by package-lock.json; {@link internals} checks the shape at runtime, and
 * the tests compare query results with `MiniSearch.search`.
 */
import MiniSearch from "minisearch";
import { FIELDS, type SearchDocument } from "./text.ts";

/** Postings of one term: field id -> (short document id -> term frequency). */
export type TermData = Map<number, Map<number, number>>;

/** The radix tree operations used here (minisearch's `SearchableMap`). */
export interface TermTree extends Iterable<[string, TermData]> {
  get(term: string): TermData | undefined;
  set(term: string, data: TermData): unknown;
  atPrefix(prefix: string): Iterable<[string, TermData]>;
  fuzzyGet(term: string, maxDistance: number): Map<string, [TermData, number]>;
}

/** minisearch 7.x private fields. */
export interface Internals {
  _index: TermTree;
  /** short id -> document id */
  _documentIds: Map<number, number>;
  /** document id -> short id */
  _idToShortId: Map<number, number>;
  /** short id -> unique term count per field id */
  _fieldLength: Map<number, number[]>;
  _avgFieldLength: number[];
  _fieldIds: Record<string, number>;
  _documentCount: number;
  _nextId: number;
  _dirtCount: number;
}

/** The minisearch instance type used throughout. */
export type Engine = MiniSearch<SearchDocument>;

/** Documents arrive as already normalised, space-separated terms (see ./text.ts). */
const OPTIONS = {
  fields: [...FIELDS],
  idField: "id",
  storeFields: [],
  tokenize: (text: string) => text.split(" "),
  processTerm: (term: string) => term || null,
  // Vacuuming rewrites the tree; it must not run while a snapshot streams it, so it runs only
  // from SearchIndex.commit.
  autoVacuum: false,
};

/** A new, empty engine. */
export function createEngine(): Engine {
  const ms = new MiniSearch<SearchDocument>(OPTIONS);
  internals(ms);
  return ms;
}

/** The field id minisearch assigns to each field. */
export const FIELD_IDS: Readonly<Record<string, number>> = Object.fromEntries(
  FIELDS.map((f, i) => [f, i]),
);

/** The private fields of `ms`; throws if this minisearch does not have the expected shape. */
export function internals(ms: Engine): Internals {
  const i = ms as unknown as Internals;
  const ok = i._index && typeof i._index.atPrefix === "function" &&
    typeof i._index.fuzzyGet === "function" && i._documentIds instanceof Map &&
    i._idToShortId instanceof Map && i._fieldLength instanceof Map &&
    Array.isArray(i._avgFieldLength) && typeof i._nextId === "number" &&
    typeof i._documentCount === "number" && i._fieldIds?.[FIELDS[0]] === 0;
  if (!ok) throw new Error("Cannot use minisearch: its internal layout is not the one of 7.x");
  return i;
}
