/**
 * The search index of the library (SPEC.md section 4.2): SQLite FTS5 in a file of its own (see
 * ./store.ts), plus the word list for typo lookups in memory (./vocab.ts). Changes go into an
 * open transaction at once (searches see them); `commit` makes them durable together with the
 * library.db generation they reflect. Only committed documents survive a crash.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { TrackRecord } from "../library/types.ts";
import { logger } from "../log/mod.ts";
import { SearchCommitError, SearchSnapshotCorruptError, SearchSnapshotError } from "./errors.ts";
import { executeQuery, type QueryOptions, QueryStatements, type SearchResult } from "./query.ts";
import {
  type BackgroundCheck,
  createMemoryStore,
  isCorruption,
  openStore,
  readHeader,
  removeStaleTemps,
  type StoreHeader,
  verifyInBackground,
  verifyStore,
  writeCopy,
} from "./store.ts";
import { FIELDS, toDocument } from "./text.ts";
import { Vocabulary } from "./vocab.ts";

const log = logger("search");

/** Results returned when no limit is given. */
export const DEFAULT_LIMIT = 100;
const INDEX_SLICE = 1000;
const VOCAB_SLICE = 20_000;

/** Records to (re)build an index from; async sources (a database cursor) are fine. */
export type TrackSource = Iterable<TrackRecord> | AsyncIterable<TrackRecord>;

/** Options of {@link SearchIndex.open}. */
export interface OpenOptions {
  /** Refuse (as stale) an index reflecting another database generation. */
  generation?: number;
  /** Open read-only: never write, `commit` rejects. */
  readOnly?: boolean;
  /**
   * Load no word list: count how each word's document count changes instead
   * ({@link SearchIndex.writerState}). For a writer beside the index that searches (the bulk
   * writer of ./bulk_writer.ts); such an index cannot search.
   */
  wordDeltas?: boolean;
}

/** The counts a writer beside the index reports after each commit ({@link SearchIndex.writerState}). */
export interface WriterState {
  /** Documents in the index. */
  size: number;
  /** Words per field over all documents. */
  fieldWords: number[];
  /** Documents with each field. */
  fieldHolders: number[];
  /** How the document count of each word changed since the last report. */
  words: [string, number][];
}

/** Where {@link SearchIndex} counts words: the word list, or only the changes to it. */
interface WordCounts {
  add(word: string): void;
  remove(word: string): void;
}

/** Word count changes, for {@link WriterState.words}. */
class WordDeltas implements WordCounts {
  #deltas = new Map<string, number>();
  add(word: string): void {
    this.#deltas.set(word, (this.#deltas.get(word) ?? 0) + 1);
  }
  remove(word: string): void {
    this.#deltas.set(word, (this.#deltas.get(word) ?? 0) - 1);
  }
  take(): [string, number][] {
    const out = [...this.#deltas].filter(([, n]) => n !== 0);
    this.#deltas.clear();
    return out;
  }
}

/** Options of {@link SearchIndex.openWithRecovery}. */
export interface RecoveryOptions {
  /** Where the documents come from when the index file is unusable (SQLite, normally). */
  rebuildFrom?: () => TrackSource | Promise<TrackSource>;
  /**
   * The database generation the index must reflect; an index of another generation is
   * stale and rebuilt. Also the generation stamped on the rebuilt index.
   */
  generation?: number;
  /**
   * Never write: rebuild in memory only, leave temp files alone, and refuse `commit`. For
   * `musicfs search` without a daemon, next to a daemon that may be starting.
   */
  readOnly?: boolean;
  /**
   * After opening, check the whole file in the background (SQLite quick_check and FTS5
   * integrity-check in a child process, seconds at a million tracks) and rebuild it when
   * damaged.
   * Searches are served meanwhile; changes wait until the check is over. For the daemon.
   */
  verify?: boolean;
}

/** What {@link SearchIndex.commit} did. */
export interface CommitResult {
  /** False when nothing had changed since the last commit, so nothing was written. */
  written: boolean;
  /** Documents in the index. */
  documentCount: number;
  /** The database generation stamped on the index. */
  generation: number;
  /** Size of the index file and its WAL (0 when not written). */
  bytes: number;
  /** Wall time of the commit, milliseconds. */
  ms: number;
}

/** Options of {@link SearchIndex.commit}. */
export interface CommitOptions {
  /** Write even when nothing changed. */
  force?: boolean;
}

/** Raised when `rebuildFrom` fails: the index cannot be rebuilt from its source. */
export class SearchRebuildError extends Error {
  /** See Error. */
  constructor(reason: string, opts: { cause?: unknown } = {}) {
    super(`Cannot rebuild search index: ${reason}`, { cause: opts.cause });
    this.name = "SearchRebuildError";
  }
}

function checkGeneration(generation: number): number {
  if (!Number.isSafeInteger(generation) || generation < 0) {
    throw new RangeError(`Search generation must be a non-negative integer, got ${generation}`);
  }
  return generation;
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

function fileBytes(path: string): number {
  let n = 0;
  for (const p of [path, `${path}-wal`]) {
    try {
      n += Deno.statSync(p).size;
    } catch { /* absent */ }
  }
  return n;
}

/** Statements that change documents. */
class WriteStatements {
  readonly insert: StatementSync;
  readonly remove: StatementSync;
  /** The fields of a document, as arrays. */
  readonly fields: StatementSync;
  readonly setMeta: StatementSync;
  /** Add to the document count of a word. */
  readonly addWord: StatementSync;
  /** Forget a word no document holds any more. */
  readonly dropWord: StatementSync;
  constructor(db: DatabaseSync) {
    this.insert = db.prepare(
      `INSERT INTO docs(rowid, ${FIELDS.join(", ")}) VALUES (?${", ?".repeat(FIELDS.length)})`,
    );
    this.remove = db.prepare("DELETE FROM docs WHERE rowid = ?");
    this.fields = db.prepare(`SELECT ${FIELDS.join(", ")} FROM docs WHERE rowid = ?`);
    this.fields.setReturnArrays(true);
    this.setMeta = db.prepare("UPDATE meta SET value = ? WHERE key = ?");
    this.addWord = db.prepare(
      "INSERT INTO words(term, doc) VALUES (?, ?) ON CONFLICT(term) DO UPDATE SET doc = doc + excluded.doc",
    );
    this.dropWord = db.prepare("DELETE FROM words WHERE term = ? AND doc <= 0");
  }
}

/**
 * Full-text index of tracks. Searches return track ids with scores; callers map ids to paths.
 * A new index lives in memory until its first commit writes it to its file.
 */
export class SearchIndex {
  /** The index file this index commits to. */
  readonly path: string;
  #db: DatabaseSync;
  #atPath: boolean;
  #readOnly: boolean;
  #vocab: Vocabulary;
  /** Where #count counts words: #vocab, or a WordDeltas for a writer that never searches. */
  #words: WordCounts;
  #query: QueryStatements;
  #write: WriteStatements;
  #generation: number;
  #size: number;
  /** Words per field over all documents, for average field lengths. */
  #fieldWords: Float64Array;
  /** Documents with each field. */
  #fieldHolders: Float64Array;
  /** How each word's document count changed since the last commit (stored by the commit). */
  #wordChanges = new Map<string, number>();
  /** Changes since the last commit, replayed when a failed write rolled them back. */
  #journal = new Map<number, TrackRecord | null>();
  #replay = false;
  #changed = false;
  #commits: Promise<unknown> = Promise.resolve();
  /** Changes only go to the journal while the file is checked or rebuilt. */
  #holding = false;
  /** The background check and any rebuild it caused. */
  #checking: Promise<void> = Promise.resolve();
  #recovery: RecoveryOptions | undefined;
  #rebuilding = false;
  #check: BackgroundCheck | undefined;

  private constructor(
    path: string,
    db: DatabaseSync,
    atPath: boolean,
    readOnly: boolean,
    vocab: Vocabulary,
    header: StoreHeader,
    words?: WordDeltas,
  ) {
    this.path = path;
    this.#db = db;
    this.#atPath = atPath;
    this.#readOnly = readOnly;
    this.#vocab = vocab;
    this.#words = words ?? vocab;
    this.#generation = header.generation;
    this.#size = header.documentCount;
    this.#fieldWords = Float64Array.from(header.fieldWords ?? FIELDS.map(() => 0));
    this.#fieldHolders = Float64Array.from(header.fieldHolders ?? FIELDS.map(() => 0));
    this.#query = new QueryStatements(db);
    this.#write = new WriteStatements(db);
  }

  /** An empty index that will commit to `path` (nothing is written until `commit`). */
  static create(path: string, opts: OpenOptions = {}): SearchIndex {
    const db = createMemoryStore();
    const header = { ...readHeader(db), generation: checkGeneration(opts.generation ?? 0) };
    return new SearchIndex(path, db, false, opts.readOnly ?? false, new Vocabulary(), header);
  }

  /**
   * Open the index file at `path`. Throws a {@link SearchSnapshotError} subclass when it is
   * missing, damaged, of another format version, or (with `generation`) stale.
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<SearchIndex> {
    const readOnly = opts.readOnly ?? false;
    const t0 = performance.now();
    const { db, header } = openStore(path, { readOnly, generation: opts.generation });
    try {
      if (opts.wordDeltas) {
        return new SearchIndex(
          path,
          db,
          true,
          readOnly,
          new Vocabulary(),
          header,
          new WordDeltas(),
        );
      }
      const t1 = performance.now();
      const vocab = await loadVocabulary(db);
      log.debug("Search index opened: checks {check} ms, word list {vocab} ms ({words} words)", {
        check: Math.round(t1 - t0),
        vocab: Math.round(performance.now() - t1),
        words: vocab.size,
      });
      return new SearchIndex(path, db, true, readOnly, vocab, header);
    } catch (e) {
      db.close();
      throw new SearchSnapshotCorruptError(
        isCorruption(e) ? "checksum" : "garbage",
        path,
        e instanceof Error ? e.message : String(e),
        { cause: e, documentCount: header.documentCount },
      );
    }
  }

  /**
   * Open the index file at `path`, or rebuild the index when it is missing, damaged, of
   * another version or stale: from `rebuildFrom` when given, else empty. A rebuild is logged as
   * a WARN with the document counts and committed at once. Index problems never throw; a
   * failing `rebuildFrom` does ({@link SearchRebuildError}).
   */
  static async openWithRecovery(path: string, opts: RecoveryOptions = {}): Promise<SearchIndex> {
    if (opts.generation !== undefined) checkGeneration(opts.generation);
    const readOnly = opts.readOnly ?? false;
    if (!readOnly) removeStaleTemps(path);
    let problem: SearchSnapshotError;
    try {
      const index = await SearchIndex.open(path, { generation: opts.generation, readOnly });
      index.#recovery = opts;
      if (opts.verify && !readOnly) index.#verifyInBackground();
      return index;
    } catch (e) {
      problem = e instanceof SearchSnapshotError ? e : new SearchSnapshotCorruptError(
        "unreadable",
        path,
        e instanceof Error ? e.message : String(e),
        { cause: e },
      );
    }
    const index = SearchIndex.create(path, { generation: opts.generation, readOnly });
    if (opts.rebuildFrom) {
      try {
        await index.indexAll(await opts.rebuildFrom());
      } catch (e) {
        index.close();
        throw new SearchRebuildError(e instanceof Error ? e.message : String(e), { cause: e });
      }
    }
    const reason = problem.reason;
    // A first start (no index, nothing to index) is routine, not a warning.
    const routine = problem.problem === "missing" && index.size === 0;
    const fields = {
      reason,
      problem: problem.problem,
      before: problem.documentCount ?? 0,
      after: index.size,
      path,
      readOnly,
    };
    const message = "Search index {reason}; rebuilt: {before} -> {after} documents";
    if (routine) log.info(message, fields);
    else log.warn(message, fields);
    if (readOnly) return index;
    try {
      await index.commit(undefined, { force: true });
    } catch (e) {
      // Serving from memory beats not serving: the index stays dirty, so the committer retries.
      log.error("Cannot commit rebuilt search index: {error}", { error: String(e), path });
    }
    return index;
  }

  /** Documents in the index. */
  get size(): number {
    return this.#size;
  }

  /** True when the file does not reflect every change made to this index. */
  get dirty(): boolean {
    return !this.#atPath || this.#changed || this.#replay;
  }

  /** The database generation of the state last opened or committed (0 for a new index). */
  get generation(): number {
    return this.#generation;
  }

  /** True when opened with `readOnly`: `commit` rejects. */
  get readOnly(): boolean {
    return this.#readOnly;
  }

  /** Always false: a commit is one SQLite transaction, nothing waits for it. */
  get committing(): boolean {
    return false;
  }

  /** Whether track `id` is indexed. */
  has(id: number): boolean {
    return this.#write.fields.get(id) !== undefined;
  }

  /** Add `track`, or replace the indexed version of the same id. */
  indexFile(track: TrackRecord): void {
    this.#change(track.id, track);
  }

  /** Remove track `id`; unknown ids are ignored. */
  remove(id: number): void {
    this.#change(id, null);
  }

  #change(id: number, track: TrackRecord | null): void {
    if (this.#readOnly && this.#atPath) {
      throw new SearchCommitError(this.path, "the index was opened read-only");
    }
    // A rebuilt index in memory commits as a whole: nothing to replay.
    if (this.#atPath) this.#journal.set(id, track);
    this.#changed = true;
    if (this.#replay || this.#holding) return;
    try {
      this.#begin();
      this.#apply(id, track);
    } catch (e) {
      this.#failed(e);
    }
  }

  #begin(): void {
    if (!this.#db.isTransaction) this.#db.exec("BEGIN");
  }

  #apply(id: number, track: TrackRecord | null): void {
    const w = this.#write;
    const old = w.fields.get(id) as unknown as (string | null)[] | undefined;
    if (old) {
      w.remove.run(id);
      this.#count(old, -1);
    }
    if (track) {
      const doc = toDocument(track);
      const values = FIELDS.map((f) => doc[f] ?? null);
      w.insert.run(id, ...values);
      this.#count(values, 1);
    }
    this.#size += (track ? 1 : 0) - (old ? 1 : 0);
  }

  /** Document frequencies and field lengths of one document coming (1) or going (-1). */
  #count(values: (string | null)[], sign: 1 | -1): void {
    const distinct = new Set<string>();
    for (let f = 0; f < values.length; f++) {
      const v = values[f];
      if (!v) continue;
      const tokens = v.split(" ");
      this.#fieldWords[f] += sign * tokens.length;
      this.#fieldHolders[f] += sign;
      for (const t of tokens) distinct.add(t);
    }
    const changes = this.#wordChanges;
    for (const t of distinct) {
      if (sign > 0) this.#words.add(t);
      else this.#words.remove(t);
      changes.set(t, (changes.get(t) ?? 0) + sign);
    }
  }

  /** A write failed: SQLite may have rolled the transaction back; replay at the next commit. */
  #failed(e: unknown): void {
    if (!this.#replay) {
      log.error("Cannot update search index, retrying at the next commit: {error}", {
        error: e instanceof Error ? e.message : String(e),
        path: this.path,
      });
    }
    this.#rollback();
  }

  #rollback(): void {
    try {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
    } catch { /* already rolled back */ }
    // They described the rolled-back changes; a replay counts again.
    this.#wordChanges.clear();
    if (this.#atPath) {
      this.#replay = true;
      // Counts kept in memory included the rolled-back changes: read the committed ones.
      try {
        const header = readHeader(this.#db);
        this.#size = header.documentCount;
        this.#fieldWords = Float64Array.from(header.fieldWords ?? FIELDS.map(() => 0));
        this.#fieldHolders = Float64Array.from(header.fieldHolders ?? FIELDS.map(() => 0));
        if (this.#words === this.#vocab) this.#words = this.#vocab = loadVocabularySync(this.#db);
      } catch (e) {
        log.error("Cannot reread search index counts: {error}", { error: String(e) });
      }
    }
  }

  /**
   * Whether another connection may write the file now: false when read-only, not yet written
   * to its file, under a check or rebuild, or with a failed write to replay.
   */
  get acceptsWriter(): boolean {
    return !this.#readOnly && this.#atPath && !this.#holding && !this.#rebuilding && !this.#replay;
  }

  /**
   * Let another connection write the file (the bulk writer, ./bulk_writer.ts): commit what is
   * pending here, keeping the stamped generation. False when this index cannot hand over now
   * (read-only, not yet written to its file, under a check or rebuild, or a write to replay):
   * it then takes the changes itself.
   */
  releaseWrites(): boolean {
    if (!this.acceptsWriter) return false;
    if (!this.#db.isTransaction) return true;
    try {
      this.#commit(this.#generation, false);
      return true;
    } catch (e) {
      log.error("Cannot commit search index before a bulk write: {error}", { error: String(e) });
      return false;
    }
  }

  /**
   * Another connection committed changes (see {@link releaseWrites}): take its counts, so that
   * searches rank with them, and commit them with the next generation.
   */
  applyWriterState(state: WriterState): void {
    this.#size = state.size;
    this.#fieldWords = Float64Array.from(state.fieldWords);
    this.#fieldHolders = Float64Array.from(state.fieldHolders);
    for (const [word, delta] of state.words) this.#vocab.adjust(word, delta);
    this.#changed = true;
  }

  /**
   * The counts of this index and the word count changes since the last call: what a writer
   * beside the searching index reports after each commit ({@link applyWriterState}).
   */
  writerState(): WriterState {
    return {
      size: this.#size,
      fieldWords: Array.from(this.#fieldWords),
      fieldHolders: Array.from(this.#fieldHolders),
      words: this.#words instanceof WordDeltas ? this.#words.take() : [],
    };
  }

  /**
   * Read the counts and the generation from the file again (no transaction may be open): after
   * another connection wrote it. With `words`, the word list too (O(index)).
   */
  reloadCounts(opts: { words?: boolean } = {}): void {
    if (this.#db.isTransaction) throw new Error("Cannot reload search counts inside a write");
    const header = readHeader(this.#db);
    this.#size = header.documentCount;
    this.#generation = header.generation;
    this.#fieldWords = Float64Array.from(header.fieldWords ?? FIELDS.map(() => 0));
    this.#fieldHolders = Float64Array.from(header.fieldHolders ?? FIELDS.map(() => 0));
    if (opts.words && this.#words === this.#vocab) {
      this.#words = this.#vocab = loadVocabularySync(this.#db);
    }
  }

  /**
   * Index every record of `source`, yielding to the event loop every thousand records so a
   * rebuild does not stall other work. Resolves to the number of records indexed.
   */
  async indexAll(source: TrackSource): Promise<number> {
    let n = 0;
    for await (const track of source) {
      this.indexFile(track);
      if (++n % INDEX_SLICE === 0) await tick();
    }
    return n;
  }

  /**
   * The best `limit` matches of `query`, best first. Every word must match, as a whole word, a
   * word prefix (2+ characters) or with a typo (1 from 4 characters, 2 from 8). Any string is
   * a valid query: one without words (empty, `/`, quotes) has no matches; queries longer than
   * `maxQueryBytes` (1024) are cut.
   */
  search(query: string, limit: number = DEFAULT_LIMIT, opts: QueryOptions = {}): SearchResult[] {
    try {
      const holders = this.#fieldHolders;
      const ctx = {
        vocab: this.#vocab,
        documents: this.#size,
        avgLength: Array.from(this.#fieldWords, (w, i) => w / Math.max(1, holders[i])),
      };
      return executeQuery(this.#query, ctx, query, limit, opts);
    } catch (e) {
      if (isCorruption(e)) this.#damaged(e);
      throw e;
    }
  }

  /**
   * The file is damaged under us: rebuild it from the source when there is one, else remove it
   * so that the next start rebuilds it.
   */
  #damaged(e: unknown): void {
    if (!this.#atPath || this.#readOnly || this.#rebuilding) return;
    const reason = e instanceof Error ? e.message : String(e);
    if (this.#recovery?.rebuildFrom) {
      this.#holding = true;
      this.#checking = this.#rebuild(reason);
      return;
    }
    log.warn("Search index {path} is damaged ({reason}); removed, the next start rebuilds it", {
      path: this.path,
      reason,
    });
    for (const p of [this.path, `${this.path}-wal`, `${this.path}-shm`]) {
      try {
        Deno.removeSync(p);
      } catch { /* gone already */ }
    }
  }

  /** Resolves once the background check, and any rebuild it caused, is over. */
  get checked(): Promise<void> {
    return this.#checking;
  }

  /**
   * Stop the background check, if one runs (at shutdown: the final commit need not wait for
   * it). The file counts as checked; the next start checks it again.
   */
  stopChecking(): void {
    this.#check?.cancel();
  }

  #verifyInBackground(): void {
    this.#holding = true;
    const check = verifyInBackground(this.path);
    this.#check = check;
    this.#checking = check.done.then(async (v) => {
      this.#check = undefined;
      if (v.ok || !v.damaged) {
        if (!v.ok) {
          log.warn("Cannot check search index {path} in the background: {reason}", {
            path: this.path,
            reason: v.reason,
          });
        }
        this.#release();
        return;
      }
      await this.#rebuild(`damaged (${v.reason})`);
    });
  }

  /** Apply the changes held during a check. */
  #release(): void {
    this.#holding = false;
    if (this.#replay || this.#journal.size === 0) return;
    try {
      this.#begin();
      for (const [id, track] of this.#journal) this.#apply(id, track);
    } catch (e) {
      this.#failed(e);
    }
  }

  /**
   * Replace a damaged file: rebuild in memory from the source (searches keep using the old
   * file meanwhile), swap, apply the changes held meanwhile, and write the new file.
   */
  async #rebuild(reason: string): Promise<void> {
    this.#rebuilding = true;
    const before = this.#size;
    const fresh = SearchIndex.create(this.path, { generation: this.#generation });
    try {
      const source = this.#recovery?.rebuildFrom;
      if (source) await fresh.indexAll(await source());
    } catch (e) {
      fresh.close();
      log.error("Cannot rebuild damaged search index {path}: {error}", {
        path: this.path,
        error: e instanceof Error ? e.message : String(e),
      });
      this.#rebuilding = false;
      this.#release();
      return;
    }
    try {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      this.#db.close();
    } catch { /* damaged: closing anyway */ }
    this.#db = fresh.#db;
    this.#query = fresh.#query;
    this.#write = fresh.#write;
    this.#vocab = fresh.#vocab;
    this.#words = fresh.#words;
    this.#wordChanges = fresh.#wordChanges;
    this.#size = fresh.#size;
    this.#fieldWords = fresh.#fieldWords;
    this.#fieldHolders = fresh.#fieldHolders;
    this.#atPath = false;
    this.#replay = false;
    this.#holding = false;
    const held = this.#journal;
    this.#journal = new Map();
    for (const [id, track] of held) this.#change(id, track);
    log.warn("Search index {reason}; rebuilt: {before} -> {after} documents", {
      reason,
      problem: "checksum",
      before,
      after: this.#size,
      path: this.path,
      readOnly: false,
    });
    try {
      this.#commit(this.#generation, true);
    } catch (e) {
      log.error("Cannot commit rebuilt search index: {error}", {
        error: String(e),
        path: this.path,
      });
    }
    this.#rebuilding = false;
  }

  /**
   * Make every change durable, stamped with `generation` (default: the current one), the
   * database generation whose changes the index holds. Commits run one at a time; a commit
   * with nothing changed (same generation, no change) writes nothing unless `force`.
   * Rejects with {@link SearchCommitError} when writing fails; the last commit is kept.
   */
  commit(generation?: number, opts: CommitOptions = {}): Promise<CommitResult> {
    if (generation !== undefined) checkGeneration(generation);
    if (this.#readOnly) {
      return Promise.reject(new SearchCommitError(this.path, "the index was opened read-only"));
    }
    // The background check holds the write lock: a commit waits for it.
    const run = async () => {
      await this.#checking;
      return this.#commit(generation ?? this.#generation, opts.force ?? false);
    };
    const result = this.#commits.then(run, run);
    this.#commits = result.catch(() => {});
    return result;
  }

  #commit(generation: number, force: boolean): CommitResult {
    const start = performance.now();
    if (!force && !this.dirty && generation === this.#generation) {
      return { written: false, documentCount: this.size, generation, bytes: 0, ms: 0 };
    }
    try {
      this.#begin();
      if (this.#replay) {
        this.#replay = false;
        for (const [id, track] of this.#journal) this.#apply(id, track);
      }
      for (const [word, delta] of this.#wordChanges) {
        if (delta === 0) continue;
        this.#write.addWord.run(word, delta);
        if (delta < 0) this.#write.dropWord.run(word);
      }
      this.#wordChanges.clear();
      this.#write.setMeta.run(generation, "generation");
      this.#write.setMeta.run(this.#size, "documents");
      this.#fieldWords.forEach((w, i) => this.#write.setMeta.run(w, `words${i}`));
      this.#fieldHolders.forEach((n, i) => this.#write.setMeta.run(n, `holders${i}`));
      this.#db.exec("COMMIT");
    } catch (e) {
      this.#rollback();
      throw new SearchCommitError(this.path, e instanceof Error ? e.message : String(e), {
        cause: e,
      });
    }
    if (!this.#atPath) {
      try {
        this.#moveToFile();
      } catch (e) {
        throw new SearchCommitError(this.path, e instanceof Error ? e.message : String(e), {
          cause: e,
        });
      }
    }
    this.#journal.clear();
    this.#changed = false;
    this.#generation = generation;
    return {
      written: true,
      documentCount: this.#size,
      generation,
      bytes: fileBytes(this.path),
      ms: performance.now() - start,
    };
  }

  /** The first commit of an index built in memory: copy it to its file, continue there. */
  #moveToFile(): void {
    writeCopy(this.#db, this.path);
    const { db } = openStore(this.path, { readOnly: false });
    this.#db.close();
    this.#db = db;
    this.#atPath = true;
    this.#query = new QueryStatements(db);
    this.#write = new WriteStatements(db);
  }

  /**
   * Full check of the file (SQLite quick_check and FTS5 integrity-check, about 1 s per
   * million tracks). Throws {@link SearchSnapshotCorruptError}.
   */
  verify(): void {
    if (this.#atPath) verifyStore(this.#db, this.path, this.#size);
  }

  /**
   * Close the file. Uncommitted changes are dropped (commit first); the WAL is folded back
   * into the file.
   */
  close(): void {
    try {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      if (this.#atPath && !this.#readOnly) this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch { /* closing anyway */ }
    try {
      this.#db.close();
    } catch { /* closed already */ }
  }
}

/** The words of the index and their document counts, read in slices (the loop keeps going). */
async function loadVocabulary(db: DatabaseSync): Promise<Vocabulary> {
  const words: string[] = [];
  const counts: number[] = [];
  const st = db.prepare("SELECT term, doc FROM words WHERE term > ? ORDER BY term LIMIT ?");
  st.setReturnArrays(true);
  let last = "";
  for (;;) {
    const rows = st.all(last, VOCAB_SLICE) as unknown as [string, number][];
    for (const [term, doc] of rows) {
      words.push(term);
      counts.push(doc);
    }
    if (rows.length < VOCAB_SLICE) break;
    last = rows[rows.length - 1][0];
    await tick();
  }
  return new Vocabulary(words, counts);
}

/** {@link loadVocabulary} at once (after a failed write, a rare path). */
function loadVocabularySync(db: DatabaseSync): Vocabulary {
  const rows = db.prepare("SELECT term, doc FROM words").all() as { term: string; doc: number }[];
  return new Vocabulary(rows.map((r) => r.term), rows.map((r) => r.doc));
}
