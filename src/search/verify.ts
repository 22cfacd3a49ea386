/**
 * Verification and repair of the search index (search.db), for `musicfs check`. Verification is
 * the full check ({@link inspectSnapshot}: what opening checks, then SQLite's quick_check and
 * FTS5's integrity-check); repair is the daemon's own recovery
 * ({@link SearchIndex.openWithRecovery}: rebuild from library.db, commit atomically).
 *
 * A snapshot behind library.db (what a kill -9 leaves: the last commit was skipped) or of an
 * older format is `stale`, not damaged: the next start rebuilds it anyway, so it is no fault.
 *
 * @module
 */
import { Database } from "../library/db.ts";
import {
  SearchSnapshotError,
  SearchSnapshotStaleError,
  SearchSnapshotVersionError,
} from "./errors.ts";
import { SearchIndex } from "./search_index.ts";
import { inspectSnapshot } from "./store.ts";

/**
 * `absent`: none written (not a fault); `stale`: sound but behind library.db or of another
 * format version, rebuilt at start (not a fault); `damaged`: unreadable as a snapshot;
 * `error`: could not be checked; `repaired`: rebuilt from library.db.
 */
export type SearchState = "ok" | "absent" | "stale" | "damaged" | "error" | "repaired";

/** What {@link verify} or {@link repair} found. */
export interface SearchReport {
  store: "search snapshot";
  path: string;
  state: SearchState;
  /** Documents in the snapshot (after a repair: in the rebuilt one). */
  documents?: number;
  /** The generation stamped on it. */
  generation?: number;
  /** The generation library.db is at, when known. */
  libraryGeneration?: number;
  /** For `stale` of another format: the version found and the one read here. */
  formatVersion?: { found: number; expected: number };
  /** For `damaged`: the kind of damage (truncated, checksum...) and a description. */
  problem?: string;
  damage?: string;
  /** A running daemon owns the snapshot (a generation behind is then expected). */
  live?: boolean;
  /** What the snapshot was before a repair. */
  was?: SearchState;
  /** Why it could not be checked or repaired. */
  error?: string;
}

/** Options of {@link verify}. */
export interface VerifyOptions {
  /** library.db's generation; without it the generation is not compared. */
  libraryGeneration?: number;
  /** A daemon is running (and commits the snapshot itself every few seconds). */
  live?: boolean;
}

/** Checks the snapshot at `path` without writing anything. Never throws. */
export async function verify(path: string, opts: VerifyOptions = {}): Promise<SearchReport> {
  const base = {
    store: "search snapshot" as const,
    path,
    libraryGeneration: opts.libraryGeneration,
    live: opts.live,
  };
  try {
    const header = await inspectSnapshot(path, { generation: opts.libraryGeneration });
    return { ...base, state: "ok", documents: header.documentCount, generation: header.generation };
  } catch (e) {
    if (!(e instanceof SearchSnapshotError)) {
      return { ...base, state: "error", error: messageOf(e) };
    }
    if (e.problem === "missing") return { ...base, state: "absent" };
    if (e instanceof SearchSnapshotStaleError) {
      // Behind a running daemon's database is its normal state between two commits.
      return {
        ...base,
        state: opts.live ? "ok" : "stale",
        generation: e.found,
        documents: e.documentCount,
      };
    }
    if (e instanceof SearchSnapshotVersionError) {
      return {
        ...base,
        state: "stale",
        formatVersion: { found: e.found, expected: e.expected },
        documents: e.documentCount,
      };
    }
    return { ...base, state: "damaged", problem: e.problem, damage: e.reason };
  }
}

/** Options of {@link repair}. */
export interface RepairOptions {
  /** library.db to rebuild from; absent or unreadable: an empty index. */
  libraryPath: string;
}

/**
 * Rebuilds the snapshot at `path` from library.db when it is stale or damaged, exactly as the
 * daemon does at start; leaves a sound one alone. Never throws.
 */
export async function repair(path: string, opts: RepairOptions): Promise<SearchReport> {
  let db: Database | null = null;
  try {
    try {
      db = Database.open(opts.libraryPath, { readOnly: true });
    } catch {
      db = null; // no (readable) library: the daemon starts an empty index beside a new one
    }
    const found = await verify(path, { libraryGeneration: db?.generation });
    if (found.state !== "stale" && found.state !== "damaged") return found;
    const index = await SearchIndex.openWithRecovery(path, {
      generation: db?.generation ?? 0,
      rebuildFrom: () => db?.allTracks() ?? [],
    });
    // openWithRecovery commits the rebuild but only logs a failed commit: this one throws.
    try {
      await index.commit();
    } finally {
      index.close();
    }
    const now = await verify(path, { libraryGeneration: db?.generation });
    if (now.state !== "ok") {
      return { ...now, was: found.state, error: "the rebuilt snapshot does not verify" };
    }
    return { ...now, state: "repaired", was: found.state };
  } catch (e) {
    return {
      store: "search snapshot",
      path,
      state: "error",
      error: `repair failed: ${messageOf(e)}`,
    };
  } finally {
    db?.close();
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
