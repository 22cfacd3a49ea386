/** The daemon's status document (GET /status, /.musicfs/status, the progress bar), assembled. */
import type { FuseSession } from "../fuse/mod.ts";
import type { VirtualTree } from "../fs/mod.ts";
import { countProblems, type Origin, type WatchState } from "../library/mod.ts";
import type { LazySearch } from "../search/mod.ts";
import type { DaemonCache } from "./cache.ts";
import type { FdBudget } from "./fd_limit.ts";
import type { HealthMonitor } from "./health.ts";
import type { ScanTask } from "./scan_task.ts";
import type { DaemonStatus } from "./status.ts";
import { taskReportToJson, type TaskSupervisor } from "./supervisor.ts";

/** Where each part of the status comes from (read at each call). */
export interface StatusSources {
  version: string;
  mountpoint: string;
  stateDir: string;
  startedAt: number;
  tree: Pick<VirtualTree, "stats" | "problems" | "loaded">;
  /** Undefined before the mount. */
  session: FuseSession | undefined;
  /** Source opens stuck past their deadline. */
  stuckOpens: number;
  scanTask: ScanTask;
  supervisor: TaskSupervisor;
  origins: readonly Origin[];
  health: HealthMonitor;
  watchStates: ReadonlyMap<number, WatchState>;
  cache: DaemonCache | undefined;
  search: LazySearch;
  integrity: DaemonStatus["integrity"];
  /** Undefined before the fd budget is set up. */
  fds: FdBudget | undefined;
}

/** The status document now. */
export function statusReport(s: StatusSources): DaemonStatus {
  const treeStats = s.tree.stats();
  const fuse = {
    ...(s.session?.stats ??
      { requests: 0, errors: 0, inflight: 0, passthrough: false, passthroughFallbacks: 0 }),
    stuckOpens: s.stuckOpens,
  };
  return {
    pid: Deno.pid,
    version: s.version,
    mountpoint: s.mountpoint,
    startedAt: s.startedAt,
    uptimeMs: Date.now() - s.startedAt,
    stateDir: s.stateDir,
    tracks: treeStats.tracks,
    problems: treeStats.problems,
    problemKinds: countProblems(s.tree.problems()),
    scan: s.scanTask.scanStatus(),
    scanRetry: s.scanTask.retryStatus(),
    firstScanDone: s.scanTask.firstScanDone,
    tasks: s.supervisor.checkAll().map(taskReportToJson),
    origins: s.origins.map((o) => {
      const h = s.health.status(String(o.id));
      const w = s.watchStates.get(o.id);
      return {
        id: o.id,
        path: o.path,
        healthy: h?.healthy ?? true,
        consecutiveFailures: h?.consecutiveFailures ?? 0,
        watch: w?.mode ?? "watching",
        reason: w?.reason,
      };
    }),
    cache: s.cache?.stats() ?? null,
    search: { state: s.search.state, documents: s.search.index?.size ?? 0 },
    fuse,
    integrity: s.integrity,
    fds: s.fds?.stats() ?? null,
    readOnly: s.scanTask.readOnly ?? null,
    memory: memoryReport(s.tree.loaded),
  };
}

function memoryReport(loaded: boolean): NonNullable<DaemonStatus["memory"]> {
  const m = Deno.memoryUsage();
  const mb = (n: number) => Math.round(n / 1e5) / 10;
  return {
    rssMB: mb(m.rss),
    heapUsedMB: mb(m.heapUsed),
    heapTotalMB: mb(m.heapTotal),
    externalMB: mb(m.external),
    tree: loaded ? "memory" : "rows",
  };
}
