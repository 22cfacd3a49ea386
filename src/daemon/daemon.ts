/**
 * The musicfs daemon: opens the stores (recovering damaged ones), builds the virtual tree,
 * mounts it, and runs every background job under the supervisor until an ordered shutdown.
 * Data flows one way: library (scanner, watcher) -> tree and search -> FUSE session.
 */
import { type FuseSession, identity, prepareMountpoint } from "../fuse/mod.ts";
import { TRACK_INO_BASE, type VirtualTree } from "../fs/mod.ts";
import { Database, mergeRoots, Scanner } from "../library/mod.ts";
import { acquireLock, type HeldLock } from "./lock.ts";
import { TaskSupervisor } from "./supervisor.ts";
import { type ControlHandlers, controlSocketPath, type SearchHit, toSearchHit } from "./control.ts";
import { installCrashGuards, installSignalHandlers } from "./shutdown.ts";
import * as systemd from "./sd_notify.ts";
import {
  DaemonStartError,
  ensureFdLimit,
  makeDaemonFilesPrivate,
  refuseMountLoop,
} from "./preflight.ts";
import { openLibrary, recordLayout, registerOrigins } from "./open_library.ts";
import { mountTree } from "./mount_session.ts";
import { ScanTask } from "./scan_task.ts";
import { shutDownDaemon } from "./shutdown_steps.ts";
import { openControlListener } from "./control_listener.ts";
import { checkServedSources } from "./source_check.ts";
import { statusReport } from "./status_report.ts";
import { LibraryWatch } from "./library_watch.ts";
import { buildServing } from "./serving.ts";
import { treeShape } from "./tree_rows.ts";
import { spawnDaemonTasks } from "./daemon_tasks.ts";
import { openStores } from "./open_stores.ts";
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

export { DaemonStartError };

/**
 * Run the daemon until it is shut down (signal, control API, or the mount going away).
 * Rejects with a one-line reason when it cannot start; resolves with the exit code.
 *
 * The steps, each in its own module: preflight (preflight.ts), open stores (open_library.ts,
 * open_stores.ts), build serving (serving.ts, change_hub.ts), mount (mount_session.ts), spawn
 * tasks (scan_task.ts, daemon_tasks.ts, control_listener.ts, source_check.ts,
 * library_watch.ts), and the ordered shutdown (shutdown_steps.ts).
 */
export async function runDaemon(opts: DaemonOptions): Promise<number> {
  const startedAt = Date.now();
  // Preflight: a refused start changes nothing.
  const limits = ensureFdLimit();
  await makeDaemonFilesPrivate(opts.stateDir, opts.cacheDir);
  const locks: HeldLock[] = [await acquireLock(opts.stateDir, { name: "musicfs" })];
  const uninstallGuards = installCrashGuards();
  let db: Database | undefined;
  let session: FuseSession | undefined;
  let integrity: DaemonStatus["integrity"] = null;
  let unregister = () => Promise.resolve();
  try {
    await refuseMountLoop(opts.mountpoint, opts.libraries);
    // A bad mountpoint (a file, not empty, another live mount) is refused before any store is
    // opened or created: bad input changes nothing. A dead mount left there is detached.
    await prepareMountpoint(opts.mountpoint, true);
    // Open stores.
    // The tree is served from library.db's rows when they picture the library as it is.
    const shape = treeShape(opts.layout, mergeRoots(opts.libraries).roots);
    const library = await openLibrary(opts.stateDir, {
      treeShape: opts.allowOther ? undefined : shape,
    });
    db = library.db;
    integrity = library.integrity;
    let allTracks = library.tracks ?? [];
    const origins = registerOrigins(db, opts.libraries, library.readOnly);
    const originPath = new Map(origins.map((o) => [o.id, o.path]));
    await recordLayout(opts.stateDir, opts.layout, opts.mountpoint);
    const originIds = new Set(origins.map((o) => o.id));
    // Rows of libraries not given this time stay in the database but out of the tree.
    const ours = <T extends { originId: number }>(xs: T[]) =>
      xs.filter((x) => originIds.has(x.originId));
    const { uid, gid } = identity();

    const watch = new LibraryWatch(origins, () => ours(db!.problems()));
    // The supervisor logs every transition itself.
    const supervisor = new TaskSupervisor();
    const { search, probes, health, opener, cache } = await openStores({
      stateDir: opts.stateDir,
      cacheDir: opts.cacheDir,
      cacheSize: opts.cacheSize,
      cacheReads: opts.cacheReads,
      followSymlinks: opts.followSymlinks,
      db,
      origins,
      ourTracks: () => ours(db!.allTracks()),
    });

    // Build serving.
    const status = (): DaemonStatus =>
      statusReport({
        version: opts.version,
        mountpoint: opts.mountpoint,
        stateDir: opts.stateDir,
        startedAt,
        tree,
        session,
        stuckOpens: opener.stuck,
        scanTask,
        supervisor,
        origins,
        health,
        watchStates: watch.states,
        cache,
        search,
        integrity,
        fds,
      });

    /** Control API requests answered (with the FUSE requests: see ServingOptions.activity). */
    let controlRequests = 0;
    const startTracks = ours(allTracks);
    allTracks = [];
    probes.seed(startTracks);
    const serving = buildServing({
      db,
      origins,
      tracks: startTracks,
      storedTree: library.storedTree,
      treeShape: shape,
      scanIdle: () => !scanTask.active,
      ours,
      uid,
      gid,
      layout: opts.layout,
      allowOther: opts.allowOther,
      allowOtherSearch: opts.allowOtherSearch,
      search,
      health,
      opener,
      cache,
      probes,
      fdLimit: limits.soft,
      statusText: () => JSON.stringify(status(), null, 2) + "\n",
      session: () => session,
      activity: () => (session?.stats.requests ?? 0) + controlRequests,
      onProblemsChanged: () => watch.stopWatchingIfFifo(),
      rescanPaths: (o, rels) => scanner.rescanPaths(o, rels),
    });
    const { tree, hub, ops, fds } = serving;

    // st_dev of our own mount, once mounted: the walk refuses anything on it (a loop).
    const mount: { dev?: number } = {};
    const scanner = new Scanner(db, {
      onChange: (c) => hub.apply(c),
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
    const scanTask = new ScanTask({
      supervisor,
      scanner,
      db,
      roots: origins.map((o) => o.path),
      hub,
      readOnly: library.readOnly,
      shuttingDown: () => signals.shuttingDown,
      trackCount: () => tree.stats().tracks,
      onProgress: opts.onScanProgress && ((final) => {
        const now = status();
        if (final && now.scan) now.scan.active = false;
        opts.onScanProgress!(now);
      }),
    });

    // Mount.
    const mounted = await mountTree(opts.mountpoint, ops, { allowOther: opts.allowOther });
    session = mounted.session;
    hub.kernel = session;
    const mountpoint = mounted.mountpoint;
    mount.dev = mounted.dev;
    log.info("Mounted {mountpoint} with {tracks} tracks", {
      mountpoint,
      tracks: tree.stats().tracks,
    });

    // Spawn tasks (and the shutdown that stops them).
    const shutdown = () =>
      shutDownDaemon({
        scanTask,
        supervisor,
        search,
        scanner,
        cache,
        db: db!,
        treeRows: serving.rows,
        mount: mounted,
        ops,
        fds,
        unregister: () => unregister(),
        locks,
        uninstallGuards,
      });
    const signals = installSignalHandlers({
      onShutdown: shutdown,
      onRescan: () => void scanTask.start(),
    });

    const controlHandlers: ControlHandlers = {
      status: () => {
        controlRequests++;
        return status();
      },
      search: async (q, limit) => {
        controlRequests++;
        const hits = await search.search(q, limit, { timeoutMs: 2000 });
        return {
          results: hits.map((h) => describeHit(tree, h.id, h.score, db!)).filter(Boolean),
        };
      },
      rescan: () => Promise.resolve({ started: scanTask.start() }),
      shutdown: () => signals.requestShutdown("control API"),
    };
    let firstListener;
    try {
      firstListener = await openControlListener(opts.stateDir, controlHandlers);
    } catch (e) {
      signals.uninstall();
      throw e;
    }
    spawnDaemonTasks(supervisor, {
      session,
      mountpoint,
      search,
      db,
      health,
      stateDir: opts.stateDir,
      controlHandlers,
      firstListener,
      requestShutdown: (why) => signals.requestShutdown(why),
    });

    health.onChange = (id, h) => {
      log.warn("Library {path} is {state}", {
        path: originPath.get(Number(id)),
        state: h.healthy ? "reachable again" : "unreachable",
      });
      // Whatever changed while it was away (or a scan refused while its root looked empty).
      if (h.healthy) scanTask.start();
    };
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
    // A start served from library.db's rows read no track: the scan that starts now finds
    // the sources gone meanwhile (and the tree is built when a change or a request needs it).
    if (tree.loaded) {
      supervisor.spawnSupervised(
        "source check",
        (signal) =>
          checkServedSources({ tracks: startTracks, originPath, tree, hub, integrity }, signal),
      );
    }
    scanTask.start();
    watch.spawn(supervisor, scanner, { mountpoint, fdLimit: limits.soft });
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

/** A search hit for GET /search: the track's fields and its /Artists path. */
function describeHit(tree: VirtualTree, id: number, score: number, db: Database): SearchHit | null {
  const t = db.getTrack(id);
  const path = t && tree.pathOf(TRACK_INO_BASE + id);
  return t && path ? toSearchHit(t, score, path) : null;
}
