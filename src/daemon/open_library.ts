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
import type { TreeStamp } from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import { exists } from "../util/mod.ts";
import { DaemonStartError } from "./preflight.ts";
import type { DaemonStatus } from "./status.ts";

const log = logger("daemon");

/** library.db as the daemon starts with it. */
export interface OpenedLibrary {
  /** The database (frozen when {@link readOnly} is set). */
  db: Database;
  /**
   * Every stored track (of every origin, also those not mounted this time); undefined when
   * the tree is served from library.db's rows at first (see {@link OpenLibraryOptions}), and
   * the tracks are read (and checked) when the tree is built: {@link storedTracks}.
   */
  tracks: TrackRecord[] | undefined;
  /** The stamp of the stored tree rows that will be served (with `tracks` undefined). */
  storedTree?: TreeStamp;
  /** The start's integrity check, for status. */
  integrity: NonNullable<DaemonStatus["integrity"]>;
  /** Why library.db is served read-only (a full state dir), until it can be written again. */
  readOnly?: string;
}

/** How {@link openLibrary} opens library.db. */
export interface OpenLibraryOptions {
  /**
   * The shape (see treeShape) this mount would serve stored tree rows for; absent: never
   * serve them (e.g. --allow-other, where folder access needs the whole tree).
   */
  treeShape?: string;
}

/**
 * Open and check `<stateDir>/library.db`: SQLite's integrity check, and, unless the stored
 * tree rows picture the library as it is (then the mount serves them at once), the track
 * rows' own checks over every row.
 */
export async function openLibrary(
  stateDir: string,
  options: OpenLibraryOptions = {},
): Promise<OpenedLibrary> {
  const checkStarted = performance.now();
  const dbPath = `${stateDir}/library.db`;
  let readOnly: string | undefined;
  let opened: LibraryDatabaseOpen;
  try {
    opened = openLibraryDatabase(dbPath, { trustCleanClose: true });
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
  const stamp = !readOnly && !opened.recovered && options.treeShape !== undefined
    ? opened.db.treeStamp()
    : undefined;
  if (
    stamp && stamp.layout === options.treeShape && stamp.generation === opened.db.generation
  ) {
    const integrity = { ok: true, ms: Math.round(performance.now() - checkStarted) };
    log.debug("library.db checked in {ms} ms; serving the stored tree (generation {g})", {
      ms: integrity.ms,
      g: stamp.generation,
    });
    return { db: opened.db, tracks: undefined, storedTree: stamp, integrity, readOnly };
  }
  if (options.treeShape !== undefined) {
    log.debug("Not serving the stored tree: {why}", {
      why: !stamp
        ? "no stamped rows"
        : stamp.layout !== options.treeShape
        ? "another layout or other libraries"
        : `rows of generation ${stamp.generation}, library at ${opened.db.generation}`,
    });
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
 * The tracks of a library whose tree was served from its rows, read in pages (the tree is
 * built from them beside the serving mount, see VirtualTree.ensureLoaded) and checked as
 * {@link openLibrary} checks them otherwise, row by row (a source listed twice is what
 * SQLite's integrity check finds: the unique index). Damage found now cannot set the database
 * aside under the running mount: the stored rows are unstamped, so the next start checks from
 * scratch (and sets it aside), and the rows that are sound are served meanwhile.
 */
export function* storedTracks(db: Database, page = 2000): Generator<TrackRecord> {
  const origins = new Set(db.origins().map((o) => o.id));
  let damaged = false;
  for (let after = 0;;) {
    const rows = db.tracksPage(after, page);
    if (rows.length === 0) return;
    after = rows[rows.length - 1].id;
    for (const t of rows) {
      const damage = trackProblems([t], origins);
      if (damage.length === 0) {
        yield t;
        continue;
      }
      if (damaged) continue;
      damaged = true;
      log.error("library.db is damaged ({reason}); it is checked from scratch at the next start", {
        reason: damage.join("; "),
      });
      try {
        db.saveTree({ clear: true, upserts: [], deletes: [] });
      } catch { /* the next start's stamp check fails anyway: the generation moves on */ }
    }
  }
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
