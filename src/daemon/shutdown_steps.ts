/**
 * The daemon's ordered shutdown: tasks stop first (no more writes), then search is committed,
 * the stores are closed, the mount goes, open files are closed, and the lock is released last,
 * so the next daemon never meets a store still in use. Each step is bounded and logged (see
 * {@link runShutdown}).
 */
import type { MusicOps } from "../fs/mod.ts";
import { type Database, markCleanClose, type Scanner } from "../library/mod.ts";
import type { LazySearch } from "../search/mod.ts";
import { logger } from "../log/mod.ts";
import type { DaemonCache } from "./cache.ts";
import type { FdBudget } from "./fd_limit.ts";
import type { HeldLock } from "./lock.ts";
import { type DaemonMount, unmountTree } from "./mount_session.ts";
import type { ScanTask } from "./scan_task.ts";
import * as systemd from "./sd_notify.ts";
import { runShutdown, type ShutdownStep } from "./shutdown.ts";
import type { TaskSupervisor } from "./supervisor.ts";
import type { TreeRowsKeeper } from "./tree_rows.ts";

const log = logger("daemon");

/**
 * How long the shutdown may spend storing the tree's rows: at 1M tracks a dump takes 13-18 s,
 * and without it the next start builds the tree from the tracks (14 s, 3 GB). Within the
 * 60 s of contrib/'s TimeoutStopSec with the other steps; a second SIGINT skips it.
 */
const TREE_DUMP_BUDGET_MS = 40_000;

/** Everything a running daemon holds, in the order it lets go of it. */
export interface DaemonParts {
  scanTask: ScanTask;
  supervisor: TaskSupervisor;
  search: LazySearch;
  scanner: Scanner;
  cache: DaemonCache | undefined;
  db: Database;
  /** Keeps library.db's tree rows: a dump in progress stops before the database closes. */
  treeRows?: TreeRowsKeeper;
  mount: DaemonMount;
  ops: MusicOps;
  fds: FdBudget;
  /** Drops this daemon from the runtime registry. */
  unregister: () => Promise<void>;
  locks: HeldLock[];
  /** Undoes {@link installCrashGuards}. */
  uninstallGuards: () => void;
}

/** The shutdown steps of a running daemon, in order. */
export function shutdownSteps(p: DaemonParts): ShutdownStep[] {
  return [
    {
      name: "stop tasks",
      run: async () => {
        p.scanTask.cancelRetry();
        const stragglers = await p.supervisor.stopAll(5000);
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
        p.search.stopChecking();
        if (p.search.index) await p.search.commit();
        p.search.close();
      },
    },
    { name: "close scanner", run: () => p.scanner.close() },
    // Rows a first scan left to a dump: stored now (100k tracks: about 2 s; 1M: 13-18 s; a
    // dump under way goes on).
    {
      name: "store the tree",
      run: () => p.treeRows?.stop(TREE_DUMP_BUDGET_MS),
      timeoutMs: TREE_DUMP_BUDGET_MS + 5000,
    },
    { name: "close cache", run: () => p.cache?.close() },
    {
      name: "close sqlite",
      run: () => {
        p.db.checkpoint();
        p.db.close();
        // The next start may skip the integrity check of a file left exactly like this.
        markCleanClose(p.db.path);
      },
    },
    { name: "unmount", run: () => unmountTree(p.mount) },
    {
      name: "close files",
      run: () => {
        p.ops.closeAll();
        p.fds.close();
      },
    },
    { name: "unregister", run: () => p.unregister() },
    {
      name: "release lock",
      run: async () => void await Promise.all(p.locks.map((l) => l.release())),
    },
  ];
}

/** Shut the daemon down in order; rejects when a step failed (each is logged). */
export async function shutDownDaemon(p: DaemonParts): Promise<void> {
  systemd.stopping();
  const report = await runShutdown(shutdownSteps(p));
  p.uninstallGuards();
  if (!report.ok) throw new Error("shutdown finished with errors");
}
