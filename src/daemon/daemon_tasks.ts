/**
 * The daemon's background tasks besides scanning and watching, spawned under the supervisor
 * once the mount serves: noticing the mount going away, committing search, checkpointing the
 * WAL, probing library health, keeping the control API listening, and the systemd watchdog.
 */
import type { FuseSession } from "../fuse/mod.ts";
import type { Database } from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import { type LazySearch, runCommitter } from "../search/mod.ts";
import { abortableSleep } from "../util/mod.ts";
import type { ControlHandlers } from "./control.ts";
import { type FirstListener, spawnControlApi } from "./control_listener.ts";
import type { HealthMonitor } from "./health.ts";
import * as systemd from "./sd_notify.ts";
import type { TaskSupervisor } from "./supervisor.ts";

const log = logger("daemon");

/** What the tasks of {@link spawnDaemonTasks} work on. */
export interface DaemonTasks {
  session: FuseSession;
  mountpoint: string;
  search: LazySearch;
  db: Database;
  health: HealthMonitor;
  stateDir: string;
  controlHandlers: ControlHandlers;
  firstListener: FirstListener;
  /** Starts the ordered shutdown (the mount went away). */
  requestShutdown: (why: string) => unknown;
}

/** Spawn the serving daemon's background tasks. */
export function spawnDaemonTasks(supervisor: TaskSupervisor, t: DaemonTasks): void {
  supervisor.spawnSupervised("fuse", async (signal) => {
    const aborted = new Promise<void>((r) =>
      signal.addEventListener("abort", () => r(), { once: true })
    );
    await Promise.race([t.session.closed, aborted]);
    if (!signal.aborted) {
      log.warn("The mount at {mountpoint} went away; shutting down", { mountpoint: t.mountpoint });
      void t.requestShutdown("mount gone");
    }
  });
  supervisor.spawnCritical(
    "search committer",
    (signal) =>
      runCommitter(t.search, { intervalMs: 5000, signal, generation: () => t.db.generation }),
  );
  supervisor.spawnCritical("wal checkpointer", async (signal) => {
    while (!signal.aborted) {
      await abortableSleep(60_000, signal);
      if (!signal.aborted) t.db.checkpoint();
    }
  });
  supervisor.spawnCritical("health monitor", (signal) => t.health.run(signal));
  spawnControlApi(supervisor, t.stateDir, t.controlHandlers, t.firstListener);
  const wd = systemd.watchdogIntervalMs();
  if (wd) supervisor.spawnSupervised("watchdog", (signal) => systemd.runWatchdog(signal));
}
