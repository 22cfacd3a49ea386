/**
 * `musicfs check [--state-dir DIR] [--cache-dir DIR] [--repair]`: verifies every store offline
 * and prints one line each (SPEC.md section 4.5); `--repair` applies the recoveries the daemon
 * would apply at startup, so a check after a repair is clean.
 *
 * Stores: `library.db` (SQLite quick_check), the search snapshot (header, checksum, body, and
 * its generation against the database), the chunk cache (the LMDB index walked in a child
 * process, since lmdb can kill the process that opens a damaged file, and every chunk file
 * hashed), and the lock (a pid file left by a dead daemon).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { CasStore, checkIndex, formatBytes, type IndexCheck } from "../../cas/mod.ts";
import {
  acquireLock,
  AlreadyRunningError,
  type HeldLock,
  isOwnerAlive,
  lockPath,
  readLock,
} from "../../daemon/mod.ts";
import { Database, DatabaseCorruptedError, openLibraryDatabase } from "../../library/mod.ts";
import {
  inspectSnapshot,
  SearchIndex,
  SearchSnapshotError,
  SearchSnapshotMissingError,
  SearchSnapshotStaleError,
  SearchSnapshotVersionError,
} from "../../search/mod.ts";
import { CommandError, type CommandIo, consoleIo, reportError, statePaths } from "./common.ts";

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
const FAULTS: ReadonlySet<StoreState> = new Set(["damaged", "stale", "error"]);

/** Whether `report` leaves something to repair. */
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
    io.out(`${r.store.padEnd(width)}  ${r.state}${r.detail ? ` (${r.detail})` : ""}`);
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
    const db = await checkDatabase(opts);
    try {
      const snapshot = await checkSnapshot(opts, db.db, live);
      const cache = await checkCache(opts, live);
      return [db.report, snapshot, cache, lockReport(locks, opts.repair ?? false)];
    } finally {
      db.db?.close();
    }
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

async function checkDatabase(
  opts: CheckOptions,
): Promise<{ report: StoreReport; db: Database | null }> {
  const { db: path } = statePaths(opts.stateDir);
  const report = (state: StoreState, detail: string) => ({ store: "library.db", state, detail });
  if (!(await exists(path))) return { report: report("absent", "never created"), db: null };
  const describe = (db: Database) =>
    `${db.trackCount()} tracks, ${db.origins().length} libraries, generation ${db.generation}`;
  try {
    if (opts.repair) {
      const opened = openLibraryDatabase(path);
      if (opened.recovered) {
        return {
          report: report(
            "repaired",
            `${reasonOf(opened.recovered.reason)}; moved to ${opened.recovered.movedTo}, started ` +
              "a fresh database: the next mount rescans the libraries",
          ),
          db: opened.db,
        };
      }
      return { report: report("ok", describe(opened.db)), db: opened.db };
    }
    const db = Database.openWithIntegrityCheck(path, { readOnly: true });
    return { report: report("ok", describe(db)), db };
  } catch (e) {
    if (e instanceof DatabaseCorruptedError) {
      return { report: report("damaged", reasonOf(e.message)), db: null };
    }
    return { report: report("error", messageOf(e)), db: null };
  }
}

/** `Cannot open database /x/library.db: <reason>` -> `<reason>`. */
function reasonOf(message: string): string {
  return message.replace(/^Cannot open database .*?: /, "");
}

async function checkSnapshot(
  opts: CheckOptions,
  db: Database | null,
  live: boolean,
): Promise<StoreReport> {
  const { snapshot: path } = statePaths(opts.stateDir);
  const report = (state: StoreState, detail: string) => ({
    store: "search snapshot",
    state,
    detail,
  });
  let finding: StoreReport;
  try {
    const header = await inspectSnapshot(path, { generation: db?.generation });
    return report("ok", `${header.documentCount} documents, generation ${header.generation}`);
  } catch (e) {
    if (e instanceof SearchSnapshotMissingError) {
      const tracks = db?.trackCount() ?? 0;
      return report(
        "absent",
        tracks ? "not written yet; the next mount builds it from library.db" : "never created",
      );
    }
    if (e instanceof SearchSnapshotStaleError) {
      if (live) {
        return report(
          "ok",
          `generation ${e.found}, library.db is at ${e.expected}: the running daemon commits it`,
        );
      }
      finding = report(
        "stale",
        `generation ${e.found}, library.db is at ${e.expected}; the next mount rebuilds it`,
      );
    } else if (e instanceof SearchSnapshotVersionError) {
      finding = report("stale", `format version ${e.found}, this musicfs reads ${e.expected}`);
    } else if (e instanceof SearchSnapshotError) {
      finding = report("damaged", `${e.problem}: ${snapshotReason(e.message)}`);
    } else {
      return report("error", messageOf(e));
    }
  }
  if (!opts.repair) return finding;
  try {
    if (!db) {
      if (await exists(statePaths(opts.stateDir).db)) return finding; // unreadable db: keep it
      // Nothing to rebuild from: the daemon starts an empty index next to its new database.
      await Deno.remove(path);
      return report("repaired", "removed it; there is no library.db to rebuild it from");
    }
    const index = SearchIndex.create(path, { generation: db.generation });
    await index.indexAll(db.allTracks());
    const done = await index.commit(undefined, { force: true });
    index.close();
    return report(
      "repaired",
      `was ${finding.state}; rebuilt from library.db: ${done.documentCount} documents, ` +
        `generation ${done.generation}`,
    );
  } catch (e) {
    return report(finding.state, `${finding.detail}; repair failed: ${messageOf(e)}`);
  }
}

/** `Cannot open search snapshot: <reason> (<path>)` -> `<reason>`. */
function snapshotReason(message: string): string {
  return message.replace(/^Cannot open search snapshot: /, "").replace(/ \([^()]*\)$/, "");
}

interface ChunkScan {
  /** Chunk files whose content matches their name. */
  good: number;
  bytes: number;
  /** Paths of chunk files whose content does not. */
  bad: string[];
}

async function checkCache(opts: CheckOptions, live: boolean): Promise<StoreReport> {
  const dir = opts.cacheDir.replace(/\/+$/, "") || "/";
  const report = (state: StoreState, detail: string) => ({ store: "chunk cache", state, detail });
  if (!(await exists(dir))) return report("absent", "never created");
  let index: IndexCheck;
  let chunks: ChunkScan;
  try {
    // The child walks the index while this process hashes the chunk files.
    [index, chunks] = await Promise.all([
      checkIndex(`${dir}/index`, {
        timeoutMs: opts.validateTimeoutMs,
        command: opts.validatorCommand,
      }),
      scanChunks(`${dir}/chunks`),
    ]);
  } catch (e) {
    return report("error", messageOf(e));
  }
  const files = `${chunks.good} chunk files, ${formatBytes(chunks.bytes)}`;
  const problems: string[] = [];
  let state: StoreState = "ok";
  if (index.status === "damaged") {
    state = "damaged";
    problems.push(`index damaged: ${index.reason}`);
  } else if (index.status === "absent" && (chunks.good || chunks.bad.length)) {
    state = "damaged";
    problems.push("index missing");
  }
  if (chunks.bad.length) {
    state = "damaged";
    problems.push(`${chunks.bad.length} chunk files do not match their hash`);
  }
  if (
    index.status === "ok" && !live && (index.chunks !== chunks.good || index.bytes !== chunks.bytes)
  ) {
    // What a crash leaves (lmdb writes are batched): the daemon reconciles at start.
    if (state === "ok") state = "stale";
    problems.push(
      `index lists ${index.chunks} chunks, ${formatBytes(index.bytes)}; the files disagree`,
    );
  }
  if (state === "ok") {
    if (index.status === "absent") return report("absent", "empty");
    const note = live ? "; the running daemon may be changing it" : "";
    return report("ok", `${files}, index matches${note}`);
  }
  const finding = report(state, `${problems.join("; ")}; ${files}`);
  if (!opts.repair) return finding;
  try {
    // Opening indexes the chunk files it does not know, but does not re-hash those it knows.
    for (const path of chunks.bad) await Deno.remove(path).catch(ignoreNotFound);
    const { store, report: opened } = await CasStore.openWithReport({
      dir,
      maxSize: opts.cacheSize ?? Number.MAX_SAFE_INTEGER,
      validatorCommand: opts.validatorCommand,
      validateTimeoutMs: opts.validateTimeoutMs,
    });
    const stats = store.stats();
    await store.close();
    const done: string[] = [];
    if (chunks.bad.length) done.push(`deleted ${chunks.bad.length} bad chunk files`);
    if (opened.rebuiltBecause) done.push(`rebuilt the index: ${opened.rebuiltBecause}`);
    if (opened.movedTo) done.push(`old index kept as ${opened.movedTo}`);
    if (opened.droppedMissing) done.push(`dropped ${opened.droppedMissing} entries without a file`);
    if (!opened.rebuiltBecause && opened.adopted) {
      done.push(`indexed ${opened.adopted} unlisted chunk files`);
    }
    done.push(`now ${stats.chunks} chunks, ${formatBytes(stats.bytes)}`);
    return report("repaired", done.join("; "));
  } catch (e) {
    return report(finding.state, `${finding.detail}; repair failed: ${messageOf(e)}`);
  }
}

const HASH_RE = /^[0-9a-f]{64}$/;

/**
 * Hashes every chunk file under `root`. Names that are not hashes are no chunks (the store
 * deletes them at open); files vanishing meanwhile were evicted by a running daemon.
 */
async function scanChunks(root: string): Promise<ChunkScan> {
  const scan: ChunkScan = { good: 0, bytes: 0, bad: [] };
  const walk = async (dir: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const e of entries) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.isFile && HASH_RE.test(e.name)) {
        let bytes: Uint8Array;
        try {
          bytes = await Deno.readFile(path);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) continue;
          throw err;
        }
        if (createHash("sha256").update(bytes).digest("hex") === e.name) {
          scan.good++;
          scan.bytes += bytes.length;
        } else {
          scan.bad.push(path);
        }
      }
    }
  };
  await walk(root);
  return scan;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function ignoreNotFound(e: unknown): void {
  if (!(e instanceof Deno.errors.NotFound)) throw e;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
