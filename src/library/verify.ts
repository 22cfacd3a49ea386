/**
 * Verification and repair of `library.db`, for `musicfs check`: the daemon's own open path
 * (`PRAGMA integrity_check` and the rows' invariants of integrity.ts, and on damage the move
 * aside and fresh start of {@link openLibraryDatabase}), plus the cross-check of every track
 * against its source file ({@link verifySources}), reported as data for the CLI to print.
 *
 * @module
 */
import {
  Database,
  DatabaseCorruptedError,
  openLibraryDatabase,
  setAsideLibraryDatabase,
} from "./db.ts";
import { checkSources, trackProblems } from "./integrity.ts";
import { existsSync } from "../util/mod.ts";

/**
 * How the database was found. `absent`: never created (not a fault); `damaged`: fails its
 * integrity check or is no database; `stale`: sound, but tracks name sources that are not
 * there (deleted while no daemon ran; the next mount drops them); `error`: could not be
 * checked (permissions, I/O);
 * `repaired`: was damaged and has been set aside for a fresh one.
 */
export type LibraryState = "ok" | "absent" | "damaged" | "stale" | "error" | "repaired";

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
  /** The cross-check of the tracks against their source files ({@link verifySources}). */
  sources?: {
    checked: number;
    missing: number;
    /** Not checked: their library root is not there. */
    skipped: number;
    /** The first source missing, as an absolute path. */
    firstMissing?: string;
  };
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

/** Checks `path` read-only, as the daemon checks it at start. Never throws. */
export function verify(path: string): LibraryReport {
  try {
    if (!existsSync(path)) return { store: "library.db", path, state: "absent" };
    const db = Database.openWithIntegrityCheck(path, { readOnly: true });
    try {
      const damage = rowProblems(db);
      if (damage.length) {
        return {
          store: "library.db",
          path,
          state: "damaged",
          damage: `integrity check failed: ${damage.join("; ")}`,
        };
      }
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
    if (!existsSync(path)) return { store: "library.db", path, state: "absent" };
    let opened = openLibraryDatabase(path);
    const damage = opened.recovered ? [] : rowProblems(opened.db);
    if (damage.length) {
      opened = setAsideLibraryDatabase(opened.db, `integrity check failed: ${damage.join("; ")}`);
    }
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

/** The track rows' own invariants (every source once, clean paths): see trackProblems. */
function rowProblems(db: Database): string[] {
  return trackProblems(db.allTracks(), new Set(db.origins().map((o) => o.id)));
}

/**
 * Cross-checks the tracks of a sound `report` (from {@link verify}) against their source
 * files: `stale` with the counts when some are not there. Other reports are returned as they
 * are. Never throws.
 */
export async function verifySources(report: LibraryReport): Promise<LibraryReport> {
  if (report.state !== "ok") return report;
  try {
    const db = Database.open(report.path, { readOnly: true });
    let tracks, origins;
    try {
      tracks = db.allTracks();
      origins = db.origins();
    } finally {
      db.close();
    }
    const roots = new Map(origins.map((o) => [o.id, o.path]));
    const r = await checkSources(tracks, roots);
    const first = r.missing[0];
    const sources = {
      checked: r.checked,
      missing: r.missing.length,
      skipped: r.skipped,
      firstMissing: first && `${roots.get(first.originId)}/${first.relPath}`,
    };
    return { ...report, state: r.missing.length ? "stale" : "ok", sources };
  } catch (e) {
    return { ...report, state: "error", error: messageOf(e) };
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
