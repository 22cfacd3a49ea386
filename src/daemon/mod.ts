/**
 * The daemon's building blocks: task supervision, the single-instance lock, systemd
 * notification, the control API, signals and the ordered shutdown, log rotation.
 *
 * {@link runDaemon} (daemon.ts) reads as its steps, each in its own module:
 * - preflight.ts: the open-files limit, private state/cache dirs, refusing a looping mount;
 * - open_library.ts, open_stores.ts: library.db (checked, set aside when damaged, read-only
 *   from a full state dir), then search, health probes, the source opener, the chunk cache;
 * - serving.ts: the tree and the FUSE operations with their guards; change_hub.ts turns each
 *   committed library batch into tree updates, stored names, kernel invalidations and search
 *   updates (probe_files.ts, source_recheck.ts help);
 * - mount_session.ts: the mount, our connection, detaching our own dead mount;
 * - scan_task.ts, library_watch.ts, daemon_tasks.ts, control_listener.ts, source_check.ts:
 *   the supervised tasks; status_report.ts: the status document;
 * - shutdown_steps.ts: the ordered shutdown.
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
