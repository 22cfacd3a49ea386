/**
 * The daemon's building blocks: task supervision, the single-instance lock, systemd
 * notification, the control API, signals and the ordered shutdown, log rotation.
 *
 * How the daemon puts them together:
 *
 * ```ts
 * installCrashGuards();
 * const lock = await acquireLock(stateDir, { label: `state dir ${stateDir}` });
 * const sup = new TaskSupervisor({ onChange: () => refreshStatusJson() });
 * sup.spawnCritical("fuse", (signal) => fuseLoop(signal));
 * sup.spawnCritical("control", async (signal) => {
 *   const server = await serveControl({ socketPath: controlSocketPath(stateDir), handlers, signal });
 *   await server.finished;
 * });
 * if (systemd.watchdogIntervalMs()) sup.spawnSupervised("watchdog", systemd.runWatchdog);
 * const signals = installSignalHandlers({
 *   onRescan: () => rescan(),
 *   onShutdown: async () => {
 *     systemd.stopping();
 *     await runShutdown([
 *       { name: "stop tasks", run: async () => void await sup.stopAll(5000) },
 *       { name: "commit search", run: () => search.commit() },
 *       { name: "close sqlite", run: () => db.checkpointAndClose() },
 *       { name: "unmount", run: () => mount.unmount() },
 *       { name: "release lock", run: () => lock.release() },
 *     ]);
 *   },
 * });
 * // handlers.shutdown = () => signals.requestShutdown("control API");
 * systemd.ready();
 * ```
 *
 * @module
 */
export {
  type RestartPolicy,
  SupervisorError,
  type SupervisorOptions,
  type TaskChange,
  type TaskFn,
  type TaskReport,
  type TaskReportJson,
  taskReportToJson,
  type TaskStatus,
  TaskSupervisor,
} from "./supervisor.ts";
export {
  acquireLock,
  AlreadyRunningError,
  type HeldLock,
  isOwnerAlive,
  LockError,
  type LockOptions,
  type LockOwner,
  lockPath,
  processStartTime,
  readLock,
} from "./lock.ts";
/** systemd notification: `systemd.ready()`, `systemd.status(text)`, `systemd.runWatchdog`... */
export * as systemd from "./sd_notify.ts";
export {
  ControlError,
  type ControlHandlers,
  ControlPermissionError,
  controlRequest,
  ControlRequestError,
  type ControlRequestOptions,
  type ControlServer,
  ControlSocketError,
  controlSocketPath,
  DaemonNotRunningError,
  DaemonTimeoutError,
  SEARCH_LIMIT,
  type SearchHit,
  serveControl,
  type ServeControlOptions,
  toSearchHit,
} from "./control.ts";
export {
  type CrashGuardOptions,
  installCrashGuards,
  installSignalHandlers,
  runShutdown,
  type RunShutdownOptions,
  type ShutdownReport,
  type ShutdownStep,
  type SignalHandlerOptions,
  type SignalHandlers,
  type StepReport,
} from "./shutdown.ts";
export { rotateLogFile, type RotateOptions } from "./logfile.ts";
export {
  detectFilesystem,
  type FsDetection,
  type HealthChange,
  HealthMonitor,
  type HealthMonitorOptions,
  type HealthOrigin,
  isNetworkFs,
  isNetworkFsType,
  mountOf,
  type OriginHealth,
  type OriginHealthReport,
} from "./health.ts";

export type { Tags, TrackRecord } from "../library/types.ts";
export {
  findByMountpoint,
  liveEntries,
  register,
  registryDir,
  type RegistryEntry,
} from "./registry.ts";
export type { DaemonStatus, OriginStatus, ScanStatus, TaskStatusJson } from "./status.ts";
