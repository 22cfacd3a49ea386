/**
 * `musicfs check [--state-dir DIR] [--cache-dir DIR] [--repair]`: verifies every store offline
 * and prints one line each (SPEC.md section 4.5); `--repair` applies the recoveries the daemon
 * would apply at startup, so a check after a repair is clean.
 *
 * The checks live in the stores (`verify()`/`repair()` of library/, search/ and cas/, which
 * reuse the daemon's own recovery code); this module takes the locks, calls them in order and
 * prints their reports. Stale stores (what a kill -9 leaves, rebuilt at the next start) are
 * reported but are no fault: exit 0.
 *
 * @module
 */
import { resolve } from "node:path";
import { type CacheReport, formatBytes, repairCache, verifyCache } from "../../cas/mod.ts";
import {
  acquireLock,
  AlreadyRunningError,
  type HeldLock,
  isOwnerAlive,
  lockPath,
  readLock,
} from "../../daemon/mod.ts";
import {
  type LibraryReport,
  repairLibrary,
  verifyLibrary,
  verifyLibrarySources,
} from "../../library/mod.ts";
import { repairSearch, type SearchReport, verifySearch } from "../../search/mod.ts";
import { CommandError, type CommandIo, consoleIo, reportError, statePaths } from "./common.ts";
import { exists } from "../../util/mod.ts";

/**
 * How a store was found. `absent`: never created (not a fault); `stale`: sound but behind
 * (what a crash leaves; the daemon catches up at start); `error`: could not be checked
 * (permissions, I/O).
 */
export type StoreState = "ok" | "absent" | "damaged" | "stale" | "error" | "repaired";

/** One line of the check. */
export interface StoreReport {
  /** `library.db`, `search snapshot`, `chunk cache` or `lock`. */
  store: string;
  state: StoreState;
  /** What was found or done, for people. */
  detail: string;
}

/** Options of {@link checkCommand} and {@link checkStores}. */
export interface CheckOptions {
  /** The state dir: library.db, search.snapshot, the lock. */
  stateDir: string;
  /** The chunk cache dir. */
  cacheDir: string;
  /** Apply the daemon's recoveries to what is damaged or stale. Refused while a daemon runs. */
  repair?: boolean;
  /**
   * The cache bound used while repairing the chunk cache. Default: no bound, so a repair
   * never evicts (the daemon evicts down to its `--cache-size` at its next start).
   */
  cacheSize?: number;
  /** Command running the LMDB validator (see `checkIndex`); for a compiled binary. */
  validatorCommand?: string[];
  /** Bound on the LMDB validation. Default 10 000 ms. */
  validateTimeoutMs?: number;
  /** Where to print; default stdout/stderr. */
  io?: CommandIo;
}

const NAME = { name: "musicfs" } as const;
const FAULTS: ReadonlySet<StoreState> = new Set(["damaged", "error"]);

/** Whether `report` leaves something to repair (stale stores are caught up at start). */
export function isFault(report: StoreReport): boolean {
  return FAULTS.has(report.state);
}

/**
 * Checks (and with `repair`, repairs) every store and prints one line each. Resolves to the
 * exit code: 0 when nothing is damaged or everything damaged was repaired, 1 otherwise or when
 * `--repair` is refused because a daemon runs.
 */
export async function checkCommand(opts: CheckOptions): Promise<number> {
  const io = opts.io ?? consoleIo;
  let reports: StoreReport[];
  try {
    reports = await checkStores(opts);
  } catch (e) {
    return reportError(io, e, "check the permissions of the state and cache dirs");
  }
  const width = Math.max(...reports.map((r) => r.store.length));
  for (const r of reports) {
    // One line per store, whatever a finding (SQLite's integrity report) spans.
    const detail = r.detail.replace(/\s*\n\s*/g, "; ");
    io.out(`${r.store.padEnd(width)}  ${r.state}${detail ? ` (${detail})` : ""}`);
  }
  const faults = reports.filter(isFault);
  if (faults.length && !opts.repair) {
    io.err(
      `musicfs: ${faults.map((r) => r.store).join(", ")} ${
        faults.length === 1 ? "needs" : "need"
      } repair (run: musicfs check --repair)`,
    );
  } else if (faults.length) {
    io.err(
      `musicfs: could not repair ${faults.map((r) => r.store).join(", ")} (see the lines above)`,
    );
  }
  return faults.length ? 1 : 0;
}

/**
 * The check itself, without printing: one report per store, in the order library.db, search
 * snapshot, chunk cache, lock.
 * @throws {CommandError} when `repair` is asked while a daemon holds a lock
 */
export async function checkStores(opts: CheckOptions): Promise<StoreReport[]> {
  const dirs = [opts.stateDir];
  if (resolve(opts.cacheDir) !== resolve(opts.stateDir)) dirs.push(opts.cacheDir);
  const locks = await Promise.all(dirs.map((d) => inspectLock(d)));
  const running = locks.find((l) => l.kind === "running");
  if (opts.repair && running) throw refuseRepair(running.pid);

  const held: HeldLock[] = [];
  try {
    if (opts.repair) {
      // Held for the whole repair, so no daemon starts on stores being rebuilt. Taking a stale
      // lock over is also its repair: the release at the end leaves no pid file.
      for (const dir of dirs) {
        if (!(await exists(dir))) continue;
        try {
          held.push(await acquireLock(dir, { ...NAME, label: dir }));
        } catch (e) {
          if (e instanceof AlreadyRunningError) throw refuseRepair(e.pid);
          throw e;
        }
      }
    }
    const live = running !== undefined;
    const paths = statePaths(opts.stateDir);
    const cacheOpts = {
      dir: opts.cacheDir,
      live,
      validatorCommand: opts.validatorCommand,
      validateTimeoutMs: opts.validateTimeoutMs,
      maxSize: opts.cacheSize,
    };
    const library = opts.repair
      ? repairLibrary(paths.db)
      : await verifyLibrarySources(verifyLibrary(paths.db));
    const search = opts.repair
      ? await repairSearch(paths.snapshot, { libraryPath: paths.db })
      : await verifySearch(paths.snapshot, { libraryGeneration: library.generation, live });
    const cache = opts.repair ? await repairCache(cacheOpts) : await verifyCache(cacheOpts);
    return [
      libraryLine(library),
      searchLine(search, library),
      cacheLine(cache),
      lockReport(locks, opts.repair ?? false),
    ];
  } finally {
    for (const lock of held) await lock.release();
  }
}

function refuseRepair(pid: number): CommandError {
  return new CommandError(
    `cannot repair while musicfs is running (pid ${pid})`,
    "stop it first: musicfs unmount",
  );
}

/** The line of library.db. */
export function libraryLine(r: LibraryReport): StoreReport {
  const line = (detail: string) => ({ store: r.store, state: r.state, detail });
  const counts = `${r.tracks} tracks, ${r.libraries} libraries, generation ${r.generation}`;
  switch (r.state) {
    case "absent":
      return line("never created");
    case "ok":
      if (!r.sources) return line(counts);
      return line(
        r.sources.skipped
          ? `${counts}; ${r.sources.skipped} sources not checked (library root not there)`
          : `${counts}; all ${r.sources.checked} sources there`,
      );
    case "stale":
      return line(
        `${counts}; ${r.sources?.missing} of ${r.sources?.checked} tracks name a source that is ` +
          `not there (first: ${r.sources?.firstMissing}); the next mount drops them`,
      );
    case "damaged":
      return line(r.damage ?? "damaged");
    case "repaired":
      return line(
        `${r.damage}; moved to ${r.movedTo}, started a fresh database: the next mount rescans ` +
          "the libraries",
      );
    default:
      return line(r.error ?? "cannot be checked");
  }
}

/** The line of the search snapshot. */
export function searchLine(r: SearchReport, library?: LibraryReport): StoreReport {
  const line = (detail: string, state: StoreState = r.state) => ({ store: r.store, state, detail });
  const behind = `generation ${r.generation}, library.db is at ${r.libraryGeneration}`;
  const what = (s: SearchReport) =>
    s.formatVersion
      ? `format version ${s.formatVersion.found}, this musicfs reads ${s.formatVersion.expected}`
      : s.state === "damaged"
      ? `${s.problem}: ${s.damage}`
      : behind;
  switch (r.state) {
    case "absent":
      return line(
        library?.tracks
          ? "not written yet; the next mount builds it from library.db"
          : "never created",
      );
    case "ok":
      if (r.live && r.libraryGeneration !== undefined && r.generation !== r.libraryGeneration) {
        return line(`${behind}: the running daemon commits it`);
      }
      return line(`${r.documents} documents, generation ${r.generation}`);
    case "stale":
      return line(`${what(r)}; will be rebuilt at start`);
    case "damaged":
      return line(what(r));
    case "repaired":
      return line(
        `was ${r.was}; rebuilt from library.db: ${r.documents} documents, generation ${r.generation}`,
      );
    default:
      return line(r.error ?? "cannot be checked");
  }
}

/** The line of the chunk cache. */
export function cacheLine(r: CacheReport): StoreReport {
  const line = (detail: string) => ({ store: r.store, state: r.state, detail });
  const files = `${r.chunks} chunk files, ${formatBytes(r.bytes ?? 0)}`;
  const problems: string[] = [];
  if (r.index?.status === "damaged") problems.push(`index damaged: ${r.index.reason}`);
  if (r.indexMissing) problems.push("index missing");
  if (r.badChunks?.length) {
    problems.push(`${r.badChunks.length} chunk files do not match their hash`);
  }
  if (r.mismatch) {
    problems.push(
      `index lists ${r.mismatch.indexChunks} chunks, ${
        formatBytes(r.mismatch.indexBytes)
      }; the files disagree`,
    );
  }
  switch (r.state) {
    case "absent":
      return line(r.index?.status === "absent" ? "empty" : "never created");
    case "ok":
      return line(
        `${files}, index matches${r.live ? "; the running daemon may be changing it" : ""}`,
      );
    case "stale":
      return line(`${problems.join("; ")}; ${files}; reconciled at start`);
    case "damaged":
      return line(`${problems.join("; ")}; ${files}${r.error ? `; ${r.error}` : ""}`);
    case "repaired": {
      const done: string[] = [];
      const o = r.opened!;
      if (r.deletedBad) done.push(`deleted ${r.deletedBad} bad chunk files`);
      if (o.rebuiltBecause) done.push(`rebuilt the index: ${o.rebuiltBecause}`);
      if (o.movedTo) done.push(`old index kept as ${o.movedTo}`);
      if (o.droppedMissing) done.push(`dropped ${o.droppedMissing} entries without a file`);
      if (!o.rebuiltBecause && o.adopted) done.push(`indexed ${o.adopted} unlisted chunk files`);
      done.push(`now ${r.chunks} chunks, ${formatBytes(r.bytes ?? 0)}`);
      return line(done.join("; "));
    }
    default:
      return line(r.error ?? "cannot be checked");
  }
}

type LockFinding =
  | { kind: "none"; dir: string }
  | { kind: "running"; dir: string; pid: number }
  | { kind: "stale"; dir: string; pid: number | null };

async function inspectLock(dir: string): Promise<LockFinding> {
  if (!(await exists(lockPath(dir, NAME)))) return { kind: "none", dir };
  const owner = await readLock(dir, NAME);
  if (!owner) return { kind: "stale", dir, pid: null };
  return isOwnerAlive(owner)
    ? { kind: "running", dir, pid: owner.pid }
    : { kind: "stale", dir, pid: owner.pid };
}

function lockReport(locks: LockFinding[], repaired: boolean): StoreReport {
  const running = locks.find((l) => l.kind === "running");
  if (running?.kind === "running") {
    return {
      store: "lock",
      state: "ok",
      detail: `held by the running daemon, pid ${running.pid}; stores may change while checked`,
    };
  }
  const stale = locks.filter((l) => l.kind === "stale");
  if (!stale.length) return { store: "lock", state: "ok", detail: "no daemon running" };
  const what = stale.map((l) =>
    `${l.pid === null ? "an unreadable pid file" : `pid ${l.pid}`} in ${l.dir}`
  ).join(", ");
  return repaired
    ? { store: "lock", state: "repaired", detail: `removed the stale lock of ${what}` }
    : {
      store: "lock",
      state: "stale",
      detail: `left by ${what}, which is gone; the next mount takes it over`,
    };
}
