/**
 * The musicfs daemon: opens the stores (recovering damaged ones), builds the virtual tree,
 * mounts it, and runs every background job under the supervisor until an ordered shutdown.
 * Data flows one way: library (scanner, watcher) -> tree and search -> FUSE session.
 */
import { detach, findFuseMount, FuseSession, identity, prepareMountpoint } from "../fuse/mod.ts";
import { isInside, MusicOps, SourceOpener, TRACK_INO_BASE, VirtualTree } from "../fs/mod.ts";
import type { Invalidation } from "../fs/mod.ts";
import {
  checkSources,
  countProblems,
  Database,
  type LibraryChange,
  type LibraryDatabaseOpen,
  LibraryWatcher,
  mergeRoots,
  openLibraryDatabase,
  type Origin,
  revalidateMsFromEnv,
  Scanner,
  type ScanProgress,
  setAsideLibraryDatabase,
  trackProblems,
  type TrackRecord,
  type WatchState,
} from "../library/mod.ts";
import { LazySearch, runCommitter } from "../search/mod.ts";
import { acquireLock, type HeldLock } from "./lock.ts";
import { abortableSleep, taskReportToJson, TaskSupervisor } from "./supervisor.ts";
import {
  type ControlHandlers,
  type ControlServer,
  controlSocketPath,
  type SearchHit,
  serveControl,
  toSearchHit,
} from "./control.ts";
import { installCrashGuards, installSignalHandlers, runShutdown } from "./shutdown.ts";
import * as systemd from "./sd_notify.ts";
import { HealthMonitor } from "./health.ts";
import { openDaemonCache } from "./cache.ts";
import { FdBudget, guardOpens, MIN_FDS, raiseFdLimit } from "./fd_limit.ts";
import { guardVanishedRoots } from "./root_guard.ts";
import { makePrivate } from "./private_dir.ts";
import { logger } from "../log/mod.ts";
import type { DaemonStatus, ScanStatus } from "./status.ts";
import { register } from "./registry.ts";

export type { DaemonStatus, ScanStatus };

const log = logger("daemon");

/** Everything the daemon needs to know, already validated by the CLI. */
export interface DaemonOptions {
  /** Absolute, existing library roots. */
  libraries: string[];
  /** Absolute path of the folder to mount on. */
  mountpoint: string;
  /** Absolute state dir: library.db, search.db, lock, control socket, log. */
  stateDir: string;
  /** Absolute dir of the chunk cache and its index. */
  cacheDir: string;
  /** Chunk cache limit in bytes. */
  cacheSize: number;
  /** Which roots are read through the chunk cache: network filesystems, all, or none. */
  cacheReads: "remote" | "always" | "never";
  /** The /Artists layout template (already checked); undefined for the default layout. */
  layout?: string;
  /**
   * Let other users see the mount (FUSE `allow_other`): the kernel then checks access
   * (`default_permissions`) against each source's owner and mode (see src/fs/access.ts).
   */
  allowOther?: boolean;
  /** Serve symlinks whose target lies outside every library root (`--follow-symlinks`). */
  followSymlinks?: boolean;
  /** With `allowOther`: other users may run queries under /.search (else it is 0700). */
  allowOtherSearch?: boolean;
  /** Program version, for status. */
  version: string;
  /** Called once the mount answers. */
  onReady?: (info: { mountpoint: string; tracks: number; pid: number }) => void;
  /** Called with the status document on each scan progress report (for a progress bar). */
  onScanProgress?: (status: DaemonStatus) => void;
}

/** Delays before scan retries 1, 2, 3...; the last repeats. */
const SCAN_RETRY_MS = [2000, 5000, 10_000, 20_000];

/** A daemon start that failed before the mount answered, with a one-line reason. */
export class DaemonStartError extends Error {
  /** `message` is shown to the user as is. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DaemonStartError";
  }
}

/**
 * Run the daemon until it is shut down (signal, control API, or the mount going away).
 * Rejects with a one-line reason when it cannot start; resolves with the exit code.
 */
export async function runDaemon(opts: DaemonOptions): Promise<number> {
  const startedAt = Date.now();
  const limits = raiseFdLimit();
  if (limits.soft < MIN_FDS) {
    throw new Error(
      `Cannot start: the open files limit is ${limits.soft}, musicfs needs at least ${MIN_FDS} (raise it with ulimit -n)`,
    );
  }
  if (limits.from !== undefined) {
    log.info("Raised the open files limit from {from} to {soft}", limits);
  }
  // What the daemon writes (library.db, snapshots, chunks, log, socket) is its user's alone.
  Deno.umask(0o077);
  await makePrivate(opts.stateDir, "state dir");
  if (await Deno.lstat(opts.cacheDir).then(() => true, () => false)) {
    await makePrivate(opts.cacheDir, "cache dir");
  }
  const locks: HeldLock[] = [await acquireLock(opts.stateDir, { name: "musicfs" })];
  const uninstallGuards = installCrashGuards();
  let db: Database | undefined;
  let session: FuseSession | undefined;
  let integrity: DaemonStatus["integrity"] = null;
  /** Why library.db is served read-only (a full state dir), until it can be written again. */
  let readOnly: string | undefined;
  let unregister = () => Promise.resolve();
  try {
    // The mount inside a library (or a library inside the mount) would index its own views,
    // and the watcher's setup would stat the mount from the thread that serves it: a deadlock.
    // Also through links: the mountpoint's folder as it really is (the mountpoint itself may be
    // a dead mount, not to be stat'ed).
    const slash = opts.mountpoint.lastIndexOf("/");
    const realParent = await Deno.realPath(opts.mountpoint.slice(0, slash) || "/").catch(() => "");
    const mountpoints = [opts.mountpoint];
    if (realParent) {
      mountpoints.push(`${realParent === "/" ? "" : realParent}${opts.mountpoint.slice(slash)}`);
    }
    for (const root of opts.libraries) {
      for (const mp of mountpoints) {
        if (isInside(mp, root) || isInside(root, mp)) {
          throw new DaemonStartError(
            `Cannot mount ${opts.mountpoint}: it ${
              isInside(mp, root) ? "is inside" : "holds"
            } the library ${root}, a loop (choose a mountpoint outside the libraries)`,
          );
        }
      }
    }
    // A bad mountpoint (a file, not empty, another live mount) is refused before any store is
    // opened or created: bad input changes nothing. A dead mount left there is detached.
    await prepareMountpoint(opts.mountpoint, true);
    const checkStarted = performance.now();
    const dbPath = `${opts.stateDir}/library.db`;
    let opened: LibraryDatabaseOpen;
    try {
      opened = openLibraryDatabase(dbPath);
    } catch (e) {
      // A full (or read-only) state dir: a WAL database cannot even be opened for reading
      // there. What is stored is served as it is, read-only, and the scan is retried until
      // the database can be written again.
      if (!(await Deno.lstat(dbPath).then(() => true, () => false))) throw e;
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
    let allTracks: TrackRecord[] = opened.db.allTracks();
    const damage = trackProblems(allTracks, new Set(opened.db.origins().map((o) => o.id)));
    if (damage.length) {
      opened = setAsideLibraryDatabase(opened.db, `integrity check failed: ${damage.join("; ")}`);
      allTracks = [];
    }
    db = opened.db;
    integrity = {
      ok: !opened.recovered,
      ms: Math.round(performance.now() - checkStarted),
      reason: opened.recovered?.reason,
    };
    log.debug("library.db checked in {ms} ms ({tracks} tracks): {result}", {
      ms: integrity.ms,
      tracks: allTracks.length,
      result: opened.recovered ? "damaged, set aside; rescanning from scratch" : "ok",
    });
    if (opened.recovered) {
      log.warn("library.db was damaged ({reason}); moved to {to}, rescanning from scratch", {
        reason: opened.recovered.reason,
        to: opened.recovered.movedTo,
      });
    }
    // A root inside another one (or given twice) would show its files twice: merged, one line.
    const { roots, merged } = mergeRoots(opts.libraries);
    for (const m of merged) log.warn("{message}", { message: m.message });
    const origins: Origin[] = roots.map((p) => {
      try {
        return db!.ensureOrigin(p);
      } catch (e) {
        if (!readOnly) throw e;
        throw new DaemonStartError(
          `Cannot add library ${p} while the state dir cannot be written (${readOnly})`,
          { cause: e },
        );
      }
    });
    const originPath = new Map(origins.map((o) => [o.id, o.path]));
    // Offline `musicfs search` prints /Artists paths; it needs the layout the daemon used.
    // Best effort: a full state dir must not keep the stored library from being served.
    const layoutFile = `${opts.stateDir}/layout`;
    try {
      if (opts.layout) await Deno.writeTextFile(layoutFile, opts.layout);
      else await Deno.remove(layoutFile).catch(() => {});
      await Deno.writeTextFile(`${opts.stateDir}/mountpoint`, opts.mountpoint);
    } catch (e) {
      log.warn("Cannot record the layout and mountpoint in the state dir: {error}", {
        error: (e as Error).message,
      });
    }
    const originIds = new Set(origins.map((o) => o.id));
    // Rows of libraries not given this time stay in the database but out of the tree.
    const ours = <T extends { originId: number }>(xs: T[]) =>
      xs.filter((x) => originIds.has(x.originId));
    const { uid, gid } = identity();

    let scanProgress: ScanProgress | null = null;
    const scanRetry: {
      failures: number;
      reason?: string;
      at?: number;
      timer?: ReturnType<typeof setTimeout>;
    } = { failures: 0 };
    const watchStates = new Map<number, WatchState>();
    // The supervisor logs every transition itself.
    const supervisor = new TaskSupervisor();
    const search = LazySearch.fromSnapshot(`${opts.stateDir}/search.db`, {
      generation: db.generation,
      rebuildFrom: () => ours(db!.allTracks()),
      verify: true,
    });
    // One known track per origin: an unmounted share leaves an empty mountpoint that a stat
    // of the root alone would call healthy.
    const sample = new Map<number, string>();
    const health = new HealthMonitor({
      origins: origins.map((o) => ({
        id: String(o.id),
        path: o.path,
        probeFile: () => sample.get(o.id),
      })),
    });

    // Every source open of the read path: off the event loop, under a deadline, regular files
    // inside a root only (symlinks out of the library only with --follow-symlinks).
    const opener = new SourceOpener({
      roots: origins.map((o) => o.path),
      followSymlinks: opts.followSymlinks,
    });
    const cache = await openDaemonCache({
      cacheDir: opts.cacheDir,
      cacheSize: opts.cacheSize,
      mode: opts.cacheReads,
      origins,
      health,
      opener,
    });
    // Only now that every lock is held: a refused start must not touch the search index.
    search.startLoading();
    // The minisearch snapshot of musicfs before search.db: rebuilt into search.db.
    await Deno.remove(`${opts.stateDir}/search.snapshot`).catch(() => {});

    const scanning = () => supervisor.status("scanner")?.state === "running";
    let firstScanDone = false;
    const status = (): DaemonStatus => {
      const treeStats = tree.stats();
      const stats = {
        ...(session?.stats ??
          { requests: 0, errors: 0, inflight: 0, passthrough: false, passthroughFallbacks: 0 }),
        stuckOpens: opener.stuck,
      };
      return {
        pid: Deno.pid,
        version: opts.version,
        mountpoint: opts.mountpoint,
        startedAt,
        uptimeMs: Date.now() - startedAt,
        stateDir: opts.stateDir,
        tracks: treeStats.tracks,
        problems: treeStats.problems,
        problemKinds: countProblems(tree.problems()),
        scan: scanProgress && {
          active: scanning(),
          phase: scanProgress.phase,
          root: scanProgress.root,
          seen: scanProgress.seen,
          unchanged: scanProgress.unchanged,
          total: scanProgress.total,
          parsed: scanProgress.parsed,
          committed: scanProgress.committed,
          walkDone: scanProgress.walkDone,
        },
        scanRetry: scanRetry.failures
          ? {
            failures: scanRetry.failures,
            reason: scanRetry.reason,
            nextAt: scanRetry.at === undefined ? undefined : new Date(scanRetry.at).toISOString(),
          }
          : null,
        firstScanDone,
        tasks: supervisor.checkAll().map(taskReportToJson),
        origins: origins.map((o) => {
          const h = health.status(String(o.id));
          const w = watchStates.get(o.id);
          return {
            id: o.id,
            path: o.path,
            healthy: h?.healthy ?? true,
            consecutiveFailures: h?.consecutiveFailures ?? 0,
            watch: w?.mode ?? "watching",
            reason: w?.reason,
          };
        }),
        cache: cache?.stats() ?? null,
        search: { state: search.state, documents: search.index?.size ?? 0 },
        fuse: stats,
        integrity,
        fds: fds?.stats() ?? null,
        readOnly: readOnly ?? null,
      };
    };

    const startTracks = ours(allTracks);
    allTracks = [];
    for (const t of startTracks) {
      if (!sample.has(t.originId)) {
        sample.set(t.originId, `${originPath.get(t.originId)}/${t.relPath}`);
      }
      if (sample.size === origins.length) break;
    }
    const invalidate = (inv: Invalidation[]) => {
      if (!session) return;
      for (const i of inv) {
        if (i.kind === "entry") session.notifyInvalEntry(i.parent, i.name);
        else if (i.kind === "delete") session.notifyDelete(i.parent, i.child, i.name);
        else session.notifyInvalInode(i.ino, 0, -1);
      }
    };
    const tree = new VirtualTree({
      origins,
      tracks: startTracks,
      covers: ours(db.covers()),
      problems: ours(db.problems()),
      playlists: ours(db.playlists()),
      names: db.names(),
      uid,
      gid,
      layout: opts.layout,
      status: () => JSON.stringify(status(), null, 2) + "\n",
      // Owners and modes the records lack (covers, rows from before schema 2) are stat'ed in
      // the background; until then those files show as ours alone.
      permissions: opts.allowOther
        ? { shareSearch: opts.allowOtherSearch, onAccessResolved: invalidate }
        : undefined,
    });
    // Names that stay put: what the tree settled is stored right after each library batch
    // (the next synchronous step after its commit), so a restart gives every file its name.
    let unsavedNames: ReturnType<typeof tree.takeNameChanges> = [];
    const saveNames = () => {
      const changes = [...unsavedNames, ...tree.takeNameChanges()];
      try {
        db!.saveNames(changes);
        unsavedNames = [];
      } catch (e) {
        unsavedNames = changes;
        log.warn("Cannot store {n} name assignments (will retry): {error}", {
          n: changes.length,
          error: String(e),
        });
      }
    };
    saveNames();

    // Re-checks of sources an open found changed, swapped or gone, by origin: coalesced, so a
    // player retrying a bad file does not queue a rescan per attempt.
    const recheck = new Map<number, Set<string>>();
    let recheckTimer: ReturnType<typeof setTimeout> | undefined;
    const recheckLater = (originId: number, path: string, folder: boolean) => {
      const root = originPath.get(originId);
      if (!root || !isInside(path, root)) return;
      let rel = path === root ? "" : path.slice(root.length + 1);
      if (folder) rel = rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "";
      let set = recheck.get(originId);
      if (!set) recheck.set(originId, set = new Set());
      set.add(rel);
      if (recheckTimer !== undefined) return;
      recheckTimer = setTimeout(() => {
        recheckTimer = undefined;
        const work = [...recheck];
        recheck.clear();
        for (const [id, rels] of work) {
          const origin = origins.find((o) => o.id === id)!;
          scanner.rescanPaths(origin, [...rels]).catch((e) =>
            log.warn("Cannot re-check {root}: {error}", { root: origin.path, error: String(e) })
          );
        }
      }, 200);
    };
    const ops = new MusicOps({
      tree,
      search: async (q, limit) =>
        (await search.search(q, limit, { timeoutMs: 2000 })).map((r) => r.id),
      invalidate,
      cache: cache?.route,
      healthy: (id) => health.status(String(id))?.healthy ?? true,
      opener,
      invalidateAttr: async (ino) => {
        if (!session) return;
        session.notifyInvalInode(ino, -1, 0);
        await session.flushNotifications();
      },
      onSourceFault: (f) => recheckLater(f.originId, f.path, true),
      onSourceChanged: (originId, path) => recheckLater(originId, path, false),
    });

    // Source fds never eat the reserve the daemon itself needs (control API, SQLite, log).
    const fds = new FdBudget({ limit: limits.soft });
    guardOpens(ops, fds, (ino) => {
      const kind = tree.get(ino)?.kind;
      return kind === "track" || kind === "cover";
    });

    guardVanishedRoots(ops, {
      originOf: (ino) => {
        const n = tree.get(ino);
        if (n?.kind !== "track" && n?.kind !== "cover") return undefined;
        const source = tree.sourcePath(n);
        const o = origins.find((o) => source.startsWith(`${o.path}/`));
        return o && { id: o.id, root: o.path };
      },
      onRootGone: () => void health.probeNow(),
    });

    // Where the change listener's time goes during a scan (the scan's debug stage line).
    const listenerMs = { tree: 0, invalidate: 0, search: 0 };
    const onChange = (c: LibraryChange) => {
      const t0 = performance.now();
      const removedIds = c.removed.map((t) => t.id);
      for (const t of c.removed) {
        if (sample.get(t.originId) === `${originPath.get(t.originId)}/${t.relPath}`) {
          sample.delete(t.originId);
        }
      }
      for (const t of c.added) {
        if (!sample.has(t.originId)) {
          sample.set(t.originId, `${originPath.get(t.originId)}/${t.relPath}`);
        }
      }
      if (c.problemsChanged) stopWatchingIfFifo();
      const inv = tree.apply(c, c.problemsChanged ? ours(db!.problems()) : undefined);
      saveNames();
      const t1 = performance.now();
      invalidate(inv);
      const t2 = performance.now();
      for (const t of c.added) search.indexFile(t);
      for (const t of c.changed) search.indexFile(t);
      for (const id of removedIds) search.remove(id);
      listenerMs.tree += t1 - t0;
      listenerMs.invalidate += t2 - t1;
      listenerMs.search += performance.now() - t2;
    };
    // st_dev of our own mount, once mounted: the walk refuses anything on it (a loop).
    const mount: { dev?: number } = {};
    // The watch's event thread opens each file it hears about, and a FIFO would hold it for
    // good: with one in the library, poll instead.
    let libraryWatcher: LibraryWatcher | undefined;
    const fifoProblem = () => ours(db!.problems()).find((p) => p.reason.startsWith("a FIFO"));
    const stopWatchingIfFifo = () => {
      const p = libraryWatcher && fifoProblem();
      if (p) {
        libraryWatcher!.stopWatching(
          `a FIFO in the library (${originPath.get(p.originId)}/${p.relPath}) stalls file events`,
        );
      }
    };
    const scanner = new Scanner(db, {
      onChange,
      // The parse workers' read-ahead holds up to 16 fds per worker; under a low open-files
      // limit those belong to the daemon's own needs (the reserve of FdBudget) instead.
      poolOptions: { readAhead: limits.soft >= 1024 ? 16 : 0 },
      walkRules: () => ({
        roots: origins.map((o) => o.path),
        followSymlinks: opts.followSymlinks,
        mountpoint: opts.mountpoint,
        mountDev: mount.dev,
      }),
    });

    // MUSICFS_PASSTHROUGH=0 serves reads in userspace even as root (tests of that path).
    const passthroughEnv = Deno.env.get("MUSICFS_PASSTHROUGH");
    session = await FuseSession.mount(opts.mountpoint, ops, {
      create: true,
      allowOther: opts.allowOther,
      passthrough: passthroughEnv === "0" ? false : "auto",
      // Other users get exactly what the sources give them; the kernel checks the modes.
      defaultPermissions: opts.allowOther,
      // The tree tells the kernel about every change, so its caches may live long (generated
      // files, which change without a notice, get 1 s: see MusicOps.shareAttrs).
      entryTtlMs: 3_600_000,
      attrTtlMs: 3_600_000,
      // Listings too: apply() invalidates a directory's inode whenever its entries change.
      cacheDirs: true,
    });
    const mountpoint = session.mountpoint;
    // Which connection is ours: after an abort (fusectl) the session ends without unmounting,
    // and only a mount of this very connection may be detached at shutdown.
    const ourDevice = findFuseMount(mountpoint)?.device;
    mount.dev = deviceNumber(ourDevice);
    log.info("Mounted {mountpoint} with {tracks} tracks", {
      mountpoint,
      tracks: tree.stats().tracks,
    });

    // A scan that fails (a full state dir, an I/O error) is retried with backoff; the tree
    // already served stays as it is meanwhile. Status shows the retry.
    const rescan = (): boolean => {
      if (supervisor.status("scanner")?.state === "running") return false;
      if (scanRetry.timer !== undefined) clearTimeout(scanRetry.timer);
      scanRetry.timer = undefined;
      scanRetry.at = undefined;
      supervisor.spawnSupervised("scanner", async (signal) => {
        try {
          if (db!.frozen && !db!.unfreeze()) {
            throw new Error(`library.db cannot be written yet (${readOnly})`);
          }
          if (readOnly && !db!.frozen) {
            log.info("The state dir can be written again: scanning");
            readOnly = undefined;
          }
          listenerMs.tree = listenerMs.invalidate = listenerMs.search = 0;
          let told = 0;
          await scanner.scan(origins.map((o) => o.path), {
            signal,
            // Every file: status must never show fewer files read than tracks in the tree
            // (the tree fills from commits, which follow the reads). Only the kept copy is
            // per file; systemd and the progress bar hear at most every 250 ms.
            progressMs: 0,
            onProgress: (p) => {
              scanProgress = p;
              const now = performance.now();
              if (now - told < 250 && p.phase !== "done") return;
              told = now;
              systemd.status(`scan ${p.phase}: ${p.parsed}/${p.total} files read`);
              opts.onScanProgress?.(status());
            },
          });
          log.debug(
            "Scan change listener: tree {tree} ms, kernel invalidations {invalidate} ms, " +
              "search {search} ms",
            {
              tree: Math.round(listenerMs.tree),
              invalidate: Math.round(listenerMs.invalidate),
              search: Math.round(listenerMs.search),
            },
          );
        } catch (e) {
          if (signal.aborted || signals.shuttingDown) throw e;
          const delayMs = SCAN_RETRY_MS[Math.min(scanRetry.failures, SCAN_RETRY_MS.length - 1)];
          scanRetry.failures++;
          scanRetry.reason = (e as Error).message;
          scanRetry.at = Date.now() + delayMs;
          log.warn("The scan failed ({reason}); serving the stored tree, retry {n} in {s} s", {
            reason: scanRetry.reason,
            n: scanRetry.failures,
            s: delayMs / 1000,
          });
          scanRetry.timer = setTimeout(() => {
            scanRetry.timer = undefined;
            if (!signals.shuttingDown) rescan();
          }, delayMs);
          throw e;
        } finally {
          // Also when the scan failed: `mount --wait` must not wait for a scan that ended.
          firstScanDone = true;
          if (opts.onScanProgress) {
            const last = status();
            if (last.scan) last.scan.active = false;
            opts.onScanProgress(last);
          }
        }
        scanRetry.failures = 0;
        scanRetry.reason = undefined;
        systemd.status(`serving ${tree.stats().tracks} tracks`);
      });
      return true;
    };

    const shutdown = async () => {
      systemd.stopping();
      const report = await runShutdown([
        {
          name: "stop tasks",
          run: async () => {
            if (scanRetry.timer !== undefined) clearTimeout(scanRetry.timer);
            const stragglers = await supervisor.stopAll(5000);
            if (stragglers.length) {
              log.warn("Tasks still running at shutdown: {stragglers}", { stragglers });
            }
          },
          timeoutMs: 7000,
        },
        {
          name: "commit search",
          run: async () => {
            // The full check of search.db started at open holds the changes made meanwhile.
            search.stopChecking();
            if (search.index) await search.commit();
            search.close();
          },
        },
        { name: "close scanner", run: () => scanner.close() },
        { name: "close cache", run: () => cache?.close() },
        {
          name: "close sqlite",
          run: () => {
            db!.checkpoint();
            db!.close();
          },
        },
        {
          name: "unmount",
          run: async () => {
            await session!.unmount();
            await detachOwnDeadMount(mountpoint, ourDevice);
          },
        },
        {
          name: "close files",
          run: () => {
            ops.closeAll();
            fds.close();
          },
        },
        { name: "unregister", run: () => unregister() },
        {
          name: "release lock",
          run: async () => void await Promise.all(locks.map((l) => l.release())),
        },
      ]);
      uninstallGuards();
      if (!report.ok) throw new Error("shutdown finished with errors");
    };
    const signals = installSignalHandlers({
      onShutdown: shutdown,
      onRescan: () => void rescan(),
    });

    const controlHandlers: ControlHandlers = {
      status,
      search: async (q, limit) => {
        const hits = await search.search(q, limit, { timeoutMs: 2000 });
        return {
          results: hits.map((h) => describeHit(tree, h.id, h.score, db!)).filter(Boolean),
        };
      },
      rescan: () => Promise.resolve({ started: rescan() }),
      shutdown: () => signals.requestShutdown("control API"),
    };
    // The first listener is part of the start: a daemon nobody can reach (e.g. control.sock is
    // a directory) must fail its start, not keep a mount that `musicfs unmount` cannot stop.
    const firstStop = new AbortController();
    let firstServer: ControlServer | undefined;
    try {
      firstServer = await serveControl({
        socketPath: controlSocketPath(opts.stateDir),
        signal: firstStop.signal,
        handlers: controlHandlers,
      });
    } catch (e) {
      signals.uninstall();
      throw new DaemonStartError((e as Error).message, { cause: e });
    }
    supervisor.spawnSupervised("fuse", async (signal) => {
      const aborted = new Promise<void>((r) =>
        signal.addEventListener("abort", () => r(), { once: true })
      );
      await Promise.race([session!.closed, aborted]);
      if (!signal.aborted) {
        log.warn("The mount at {mountpoint} went away; shutting down", { mountpoint });
        void signals.requestShutdown("mount gone");
      }
    });
    supervisor.spawnCritical(
      "search committer",
      (signal) =>
        runCommitter(search, { intervalMs: 5000, signal, generation: () => db!.generation }),
    );
    supervisor.spawnCritical("wal checkpointer", async (signal) => {
      while (!signal.aborted) {
        await abortableSleep(60_000, signal);
        if (!signal.aborted) db!.checkpoint();
      }
    });
    supervisor.spawnCritical("health monitor", (signal) => health.run(signal));
    supervisor.spawnCritical("control api", async (signal) => {
      let server = firstServer;
      firstServer = undefined;
      if (server) signal.addEventListener("abort", () => firstStop.abort(), { once: true });
      else {
        server = await serveControl({
          socketPath: controlSocketPath(opts.stateDir),
          signal,
          handlers: controlHandlers,
        });
      }
      await server.finished;
    }, {
      // Never given up on: it is how the user reaches the daemon. A listener lost (e.g. to
      // EMFILE) comes back within seconds.
      backoffMs: [200, 1000, 5000],
      maxRestarts: 1000,
    });
    const wd = systemd.watchdogIntervalMs();
    if (wd) supervisor.spawnSupervised("watchdog", (signal) => systemd.runWatchdog(signal));

    health.onChange = (id, h) => {
      log.warn("Library {path} is {state}", {
        path: originPath.get(Number(id)),
        state: h.healthy ? "reachable again" : "unreachable",
      });
      // Whatever changed while it was away (or a scan refused while its root looked empty).
      if (h.healthy) rescan();
    };
    // The cross-check of every served track against its source file, off the loop: a path
    // that does not exist (a file deleted while stopped, or a damaged row that passed every
    // check) leaves the tree at once instead of when the rescan reaches it.
    supervisor.spawnSupervised("source check", async (signal) => {
      const result = await checkSources(startTracks, originPath, { signal });
      const missing = result.missing.filter((t) => tree.get(TRACK_INO_BASE + t.id));
      if (integrity) {
        integrity.sources = {
          checked: result.checked,
          missing: result.missing.length,
          skipped: result.skipped,
          ms: result.ms,
        };
      }
      if (missing.length) {
        log.warn(
          "{count} of {checked} tracks name a source that is not there (first: {first}); " +
            "removed from the tree until a scan finds them",
          {
            count: missing.length,
            checked: result.checked,
            first: `${originPath.get(missing[0].originId)}/${missing[0].relPath}`,
          },
        );
        invalidate(tree.apply({ removed: missing }));
        for (const t of missing) search.remove(t.id);
      } else {
        log.info("Sources of {checked} tracks checked in {ms} ms: all there", {
          checked: result.checked,
          ms: result.ms,
        });
      }
    });
    rescan();
    try {
      unregister = await register({
        mountpoint,
        stateDir: opts.stateDir,
        socket: controlSocketPath(opts.stateDir),
        version: opts.version,
        startedAt,
      });
    } catch (e) {
      // Commands then find this daemon only through --state-dir (or the default one).
      log.warn("Cannot record the mount in the runtime registry: {error}", { error: e });
    }
    systemd.ready();
    opts.onReady?.({ mountpoint, tracks: tree.stats().tracks, pid: Deno.pid });
    // Deno.watchFs sets up its inotify watches synchronously (0.5 s at 16k folders): only
    // once the mount is up and reported ready.
    supervisor.spawnCritical("watcher", (signal) => {
      const known = fifoProblem();
      const watcher = libraryWatcher = new LibraryWatcher(scanner, origins, {
        mountpoint,
        // A worker thread costs about 6 fds: only with a workable fd limit (not `ulimit -n 64`).
        watchInWorker: limits.soft >= 256,
        pollReason: known &&
          `a FIFO in the library (${originPath.get(known.originId)}/${known.relPath}) stalls ` +
            `file events`,
        revalidateMs: revalidateMsFromEnv(),
        onState: (s: WatchState) => {
          for (const o of origins) watchStates.set(o.id, s);
          if (s.mode === "polling") {
            log.warn("Watching failed ({reason}); rescanning periodically", { reason: s.reason });
          }
        },
      });
      return watcher.run(signal);
    });
    // Runs until a signal or the control API shuts us down; that path exits the process.
    await new Promise(() => {});
    return 0;
  } catch (e) {
    await unregister().catch(() => {});
    if (session) await session.unmount().catch(() => {});
    try {
      db?.close();
    } catch { /* already closed */ }
    uninstallGuards();
    await Promise.all(locks.map((l) => l.release().catch(() => {})));
    throw e;
  }
}

/**
 * Detach the mount at `mountpoint` when it is still the connection `device` (`major:minor`):
 * what an aborted connection leaves (the session ends without unmounting), a dead mount that
 * fails every access with ENOTCONN. A mount made there since by someone else is left alone.
 */
async function detachOwnDeadMount(mountpoint: string, device: string | undefined): Promise<void> {
  if (!device) return;
  const mount = findFuseMount(mountpoint);
  if (mount?.device !== device) return;
  if (await detach(mountpoint)) {
    log.info("Detached {mountpoint}: its FUSE connection had been aborted", { mountpoint });
  }
}

/** A search hit for GET /search: the track's fields and its /Artists path. */
function describeHit(tree: VirtualTree, id: number, score: number, db: Database): SearchHit | null {
  const t = db.getTrack(id);
  const path = t && tree.pathOf(TRACK_INO_BASE + id);
  return t && path ? toSearchHit(t, score, path) : null;
}

/** `st_dev` of a `major:minor` device (glibc's makedev), or undefined. */
function deviceNumber(device: string | undefined): number | undefined {
  const m = device && /^(\d+):(\d+)$/.exec(device);
  if (!m) return undefined;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return ((major & 0xfffff000) * 2 ** 32) + ((major & 0xfff) << 8) + ((minor & 0xffffff00) << 12) +
    (minor & 0xff);
}
