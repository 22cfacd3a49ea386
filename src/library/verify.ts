/**
 * Verification and repair of `library.db`, for `musicfs check`: the daemon's own open path
 * (`PRAGMA quick_check`, and on damage the move aside and fresh start of
 * {@link openLibraryDatabase}), reported as data for the CLI to print.
 *
 * @module
 */
import { Database, DatabaseCorruptedError, openLibraryDatabase } from "./db.ts";

/**
 * How the database was found. `absent`: never created (not a fault); `damaged`: fails its
 * integrity check or is no database; `error`: could not be checked (permissions, I/O);
 * `repaired`: was damaged and has been set aside for a fresh one.
 */
export type LibraryState = "ok" | "absent" | "damaged" | "error" | "repaired";

/** What {@link verify} or {@link repair} found. */
export interface LibraryReport {
  store: "library.db";
  /** The database file. */
  path: string;
  state: LibraryState;
  /** Tracks, when it could be read. */
  tracks?: number;
  /** Library roots it knows, when it could be read. */
  libraries?: number;
  /** Its generation (what the search snapshot must match), when it could be read. */
  generation?: number;
  /** The damage found (`integrity check failed: ...`, `file is not a database`). */
  damage?: string;
  /** Where the damaged file was moved by a repair. */
  movedTo?: string;
  /** Why it could not be checked. */
  error?: string;
}

function describe(path: string, db: Database, state: LibraryState): LibraryReport {
  return {
    store: "library.db",
    path,
    state,
    tracks: db.trackCount(),
    libraries: db.origins().length,
    generation: db.generation,
  };
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Checks `path` read-only, as the daemon checks it at start. Never throws. */
export function verify(path: string): LibraryReport {
  try {
    if (!exists(path)) return { store: "library.db", path, state: "absent" };
    const db = Database.openWithIntegrityCheck(path, { readOnly: true });
    try {
      return describe(path, db, "ok");
    } finally {
      db.close();
    }
  } catch (e) {
    if (e instanceof DatabaseCorruptedError) {
      return { store: "library.db", path, state: "damaged", damage: e.detail };
    }
    return { store: "library.db", path, state: "error", error: messageOf(e) };
  }
}

/**
 * Repairs `path` the way the daemon does at start: a damaged database is moved aside as
 * `library.db.corrupt-<time>` and a fresh one started (the next mount rescans). A sound one is
 * left as it is. Never throws.
 */
export function repair(path: string): LibraryReport {
  try {
    if (!exists(path)) return { store: "library.db", path, state: "absent" };
    const opened = openLibraryDatabase(path);
    try {
      if (!opened.recovered) return describe(path, opened.db, "ok");
      return {
        ...describe(path, opened.db, "repaired"),
        damage: opened.recovered.detail ?? opened.recovered.reason,
        movedTo: opened.recovered.movedTo,
      };
    } finally {
      opened.db.close();
    }
  } catch (e) {
    return { store: "library.db", path, state: "error", error: messageOf(e) };
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
