/**
 * Opening library.db for the daemon: checked (a damaged one is set aside and rescanned from
 * scratch), served read-only from a full state dir, and this mount's libraries registered.
 */
import {
  Database,
  type LibraryDatabaseOpen,
  mergeRoots,
  openLibraryDatabase,
  type Origin,
  setAsideLibraryDatabase,
  trackProblems,
  type TrackRecord,
} from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import { exists } from "../util/mod.ts";
import { DaemonStartError } from "./preflight.ts";
import type { DaemonStatus } from "./status.ts";

const log = logger("daemon");

/** library.db as the daemon starts with it. */
export interface OpenedLibrary {
  /** The database (frozen when {@link readOnly} is set). */
  db: Database;
  /** Every stored track (of every origin, also those not mounted this time). */
  tracks: TrackRecord[];
  /** The start's integrity check, for status. */
  integrity: NonNullable<DaemonStatus["integrity"]>;
  /** Why library.db is served read-only (a full state dir), until it can be written again. */
  readOnly?: string;
}

/** Open and check `<stateDir>/library.db`. */
export async function openLibrary(stateDir: string): Promise<OpenedLibrary> {
  const checkStarted = performance.now();
  const dbPath = `${stateDir}/library.db`;
  let readOnly: string | undefined;
  let opened: LibraryDatabaseOpen;
  try {
    opened = openLibraryDatabase(dbPath);
  } catch (e) {
    // A full (or read-only) state dir: a WAL database cannot even be opened for reading
    // there. What is stored is served as it is, read-only, and the scan is retried until
    // the database can be written again.
    if (!(await exists(dbPath))) throw e;
    try {
      opened = { db: Database.openFrozen(dbPath), fullRescan: false };
    } catch {
      throw e;
    }
    readOnly = (e as Error).message;
    log.warn(
      "Cannot open library.db for writing ({reason}); serving the stored library read-only " +
        "and retrying the scan until the state dir can be written",
      { reason: readOnly },
    );
  }
  // The rows themselves (every source once, clean paths), over the load the tree needs anyway.
  let tracks: TrackRecord[] = opened.db.allTracks();
  const damage = trackProblems(tracks, new Set(opened.db.origins().map((o) => o.id)));
  if (damage.length) {
    opened = setAsideLibraryDatabase(opened.db, `integrity check failed: ${damage.join("; ")}`);
    tracks = [];
  }
  const integrity = {
    ok: !opened.recovered,
    ms: Math.round(performance.now() - checkStarted),
    reason: opened.recovered?.reason,
  };
  log.debug("library.db checked in {ms} ms ({tracks} tracks): {result}", {
    ms: integrity.ms,
    tracks: tracks.length,
    result: opened.recovered ? "damaged, set aside; rescanning from scratch" : "ok",
  });
  if (opened.recovered) {
    log.warn("library.db was damaged ({reason}); moved to {to}, rescanning from scratch", {
      reason: opened.recovered.reason,
      to: opened.recovered.movedTo,
    });
  }
  return { db: opened.db, tracks, integrity, readOnly };
}

/**
 * This mount's libraries as origins of `db` (added when new). A root inside another one (or
 * given twice) would show its files twice: merged, with one warning line.
 */
export function registerOrigins(
  db: Database,
  libraries: string[],
  readOnly: string | undefined,
): Origin[] {
  const { roots, merged } = mergeRoots(libraries);
  for (const m of merged) log.warn("{message}", { message: m.message });
  return roots.map((p) => {
    try {
      return db.ensureOrigin(p);
    } catch (e) {
      if (!readOnly) throw e;
      throw new DaemonStartError(
        `Cannot add library ${p} while the state dir cannot be written (${readOnly})`,
        { cause: e },
      );
    }
  });
}

/**
 * Offline `musicfs search` prints /Artists paths; it needs the layout the daemon used. Best
 * effort: a full state dir must not keep the stored library from being served.
 */
export async function recordLayout(
  stateDir: string,
  layout: string | undefined,
  mountpoint: string,
): Promise<void> {
  const layoutFile = `${stateDir}/layout`;
  try {
    if (layout) await Deno.writeTextFile(layoutFile, layout);
    else await Deno.remove(layoutFile).catch(() => {});
    await Deno.writeTextFile(`${stateDir}/mountpoint`, mountpoint);
  } catch (e) {
    log.warn("Cannot record the layout and mountpoint in the state dir: {error}", {
      error: (e as Error).message,
    });
  }
}
