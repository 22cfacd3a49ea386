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
 * The building blocks as the daemon uses them, runnable here without the stores and the mount
 * (a worker task stands in for the FUSE loop, the scanner and the watcher; `systemd.ready()`
 * and `systemd.stopping()` go around the serving part, and do nothing outside systemd):
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   acquireLock,
 *   AlreadyRunningError,
 *   type ControlHandlers,
 *   controlRequest,
 *   controlSocketPath,
 *   installCrashGuards,
 *   installSignalHandlers,
 *   readLock,
 *   runShutdown,
 *   serveControl,
 *   TaskSupervisor,
 *   taskReportToJson,
 * } from "./mod.ts";
 *
 * const home = await Deno.makeTempDir();
 * const stateDir = `${home}/state`;
 * const uninstallGuards = installCrashGuards(); // a bug in a callback is logged, not fatal
 * const lock = await acquireLock(stateDir, { label: `state dir ${stateDir}` });
 * await assert.rejects(acquireLock(stateDir), AlreadyRunningError); // one daemon per state dir
 * const sup = new TaskSupervisor();
 * sup.spawnCritical("worker", (signal) =>
 *   new Promise<void>((done) => signal.addEventListener("abort", () => done())));
 * const exited = Promise.withResolvers<number>();
 * // SIGINT and SIGTERM start the ordered shutdown, SIGHUP a rescan.
 * const signals = installSignalHandlers({
 *   onRescan: () => {},
 *   onShutdown: async () => {
 *     const report = await runShutdown([
 *       { name: "stop tasks", run: async () => void await sup.stopAll(5000) },
 *       { name: "stop the control API", run: () => control.shutdown() },
 *       { name: "release lock", run: () => lock.release() },
 *     ]);
 *     if (!report.ok) throw new Error("shutdown finished with errors");
 *   },
 *   exit: (code) => exited.resolve(code), // by default Deno.exit
 * });
 * const handlers: ControlHandlers = {
 *   status: () => ({ tasks: sup.checkAll().map(taskReportToJson) }),
 *   search: () => Promise.resolve({ results: [] }),
 *   rescan: () => Promise.resolve({ started: false }),
 *   shutdown: () => signals.requestShutdown("control API"),
 * };
 * // In $XDG_RUNTIME_DIR (here `${home}/run`) when set, else in the state dir.
 * const socketPath = controlSocketPath(stateDir, `${home}/run`);
 * const control = await serveControl({ socketPath, handlers });
 * try {
 *   // What `musicfs status` and `musicfs unmount` do from another process:
 *   const status = await controlRequest(socketPath, "GET", "/status");
 *   const worker = { name: "worker", critical: true, state: "running", restarts: 0 };
 *   assert.deepEqual(status, { tasks: [worker] });
 *   await controlRequest(socketPath, "POST", "/shutdown");
 *   assert.equal(await exited.promise, 0);
 *   assert.equal(sup.status("worker")?.state, "stopped");
 *   assert.equal(await Deno.stat(socketPath).catch(() => "gone"), "gone");
 *   assert.equal(await readLock(stateDir), null); // the next daemon may start
 * } finally {
 *   signals.uninstall();
 *   uninstallGuards();
 *   await Deno.remove(home, { recursive: true });
 * }
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
