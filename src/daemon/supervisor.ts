/**
 * Supervision of the daemon's background tasks (scanner, watcher, health monitor, prefetcher,
 * search committer, WAL checkpointer, control API, FUSE request loop): none is fire-and-forget.
 * Every task gets its own AbortSignal, its outcome is recorded, every transition is logged, and
 * critical tasks are restarted with backoff until they fail too often.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import { abortableSleep } from "../util/mod.ts";

const log = logger("daemon", "supervisor");

/** What a task is doing now. */
export type TaskStatus =
  | { state: "running" }
  | { state: "failed"; error: Error; at: Date }
  | { state: "restarting"; attempt: number; delayMs: number }
  | { state: "stopped" };

/** The body of a task. It must honour `signal` and never swallow its own failure. */
export type TaskFn = (signal: AbortSignal) => Promise<void> | void;

/** How a critical task is restarted. */
export interface RestartPolicy {
  /**
   * Delay before restart attempt 1, 2, 3...; the last entry repeats.
   * Default `[1000, 5000, 30000]`.
   */
  backoffMs?: number[];
  /** Restarts allowed within `windowMs`; one more failure leaves the task failed. Default 5. */
  maxRestarts?: number;
  /**
   * Only restarts this recent count against `maxRestarts` and pick the backoff step, so a task
   * that fails once a day is not condemned after five days. Default 10 minutes.
   */
  windowMs?: number;
}

/** One row of {@link TaskSupervisor.checkAll}. */
export interface TaskReport {
  /** The task's name. */
  name: string;
  /** Spawned with spawnCritical (restarted on failure). */
  critical: boolean;
  /** What it is doing now. */
  status: TaskStatus;
  /** Restarts since the task was spawned (not only those within the window). */
  restarts: number;
}

/** A {@link TaskReport} in plain JSON form, for GET /status and status.json. */
export interface TaskReportJson {
  /** The task's name. */
  name: string;
  /** Spawned with spawnCritical. */
  critical: boolean;
  /** "running", "failed", "restarting" or "stopped". */
  state: TaskStatus["state"];
  /** Restarts so far. */
  restarts: number;
  /** The failure's message, when failed. */
  error?: string;
  /** When it failed, ISO 8601. */
  at?: string;
  /** The restart attempt being waited for, when restarting. */
  attempt?: number;
  /** The backoff before that attempt, when restarting. */
  delayMs?: number;
}

/** `report` with its Error and Date turned into strings. */
export function taskReportToJson(report: TaskReport): TaskReportJson {
  const { name, critical, restarts, status } = report;
  const json: TaskReportJson = { name, critical, state: status.state, restarts };
  if (status.state === "failed") {
    json.error = status.error.message;
    json.at = status.at.toISOString();
  } else if (status.state === "restarting") {
    json.attempt = status.attempt;
    json.delayMs = status.delayMs;
  }
  return json;
}

/** A transition, as given to {@link SupervisorOptions.onChange}. */
export interface TaskChange {
  /** The task's name. */
  name: string;
  /** Spawned with spawnCritical. */
  critical: boolean;
  /** The new status. */
  status: TaskStatus;
  /** The status before, undefined when the task was just spawned. */
  previous: TaskStatus | undefined;
  /** Restarts so far. */
  restarts: number;
}

/** Options of a {@link TaskSupervisor}. */
export interface SupervisorOptions {
  /** Called after every transition, e.g. to refresh status.json or STATUS= for systemd. */
  onChange?: (change: TaskChange) => void;
  /** Policy for critical tasks spawned without one. */
  defaultPolicy?: RestartPolicy;
  /**
   * Waits out a backoff delay; must reject or resolve early when `signal` aborts. Tests inject
   * one to hold a restart at the backoff and observe it; the default uses setTimeout.
   */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** Thrown by spawn calls that would clash with an existing task or a stopping supervisor. */
export class SupervisorError extends Error {
  /**
   * Creates the error.
   * @param message what went wrong
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SupervisorError";
  }
}

/** Resolves when the task is done for good: stopped, or failed and not restarted. */
type Settle = (status: TaskStatus) => void;

interface Task {
  name: string;
  critical: boolean;
  status: TaskStatus;
  restarts: number;
  restartTimes: number[];
  controller: AbortController;
  /** Settles when the task is stopped or failed for good; never rejects. */
  done: Promise<TaskStatus>;
  settle: Settle;
}

const DEFAULT_POLICY: Required<RestartPolicy> = {
  backoffMs: [1000, 5000, 30000],
  maxRestarts: 5,
  windowMs: 10 * 60 * 1000,
};

/**
 * Runs and watches named background tasks.
 *
 * Outcomes:
 * - a task that resolves, or rejects after its signal aborted with the abort reason, is
 *   `stopped`;
 * - a task that throws (synchronously or not) is `failed`; a critical task is then
 *   `restarting` after its backoff, unless stopping was requested;
 * - a critical task that returns on its own while not asked to stop is treated as a failure
 *   and restarted: critical tasks are meant to run until the daemon stops, so a clean return
 *   means the work it stood for has silently ended.
 */
export class TaskSupervisor {
  readonly #tasks = new Map<string, Task>();
  readonly #onChange?: (change: TaskChange) => void;
  readonly #defaultPolicy: Required<RestartPolicy>;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  #stopping = false;

  /**
   * Creates a supervisor with no tasks.
   * @param options hooks and defaults
   */
  constructor(options: SupervisorOptions = {}) {
    this.#onChange = options.onChange;
    this.#defaultPolicy = { ...DEFAULT_POLICY, ...options.defaultPolicy };
    this.#sleep = options.sleep ?? abortableSleep;
  }

  /** Runs `fn` once; its end, clean or not, is recorded and never restarts it. */
  spawnSupervised(name: string, fn: TaskFn): void {
    const task = this.#register(name, false);
    void this.#runOnce(task, fn).then((outcome) => {
      if (outcome.kind === "failed") this.#finish(task, outcome.status);
      else this.#finish(task, { state: "stopped" });
    });
  }

  /**
   * Runs `factory(signal)` and runs it again after a failure (or an unexpected clean return),
   * waiting `backoffMs[attempt - 1]` first, until more than `maxRestarts` restarts fall within
   * `windowMs`: the task then stays `failed` and is logged as an error.
   */
  spawnCritical(name: string, factory: TaskFn, policy?: RestartPolicy): void {
    const p = { ...this.#defaultPolicy, ...policy };
    if (p.backoffMs.length === 0) throw new RangeError("backoffMs must not be empty");
    const task = this.#register(name, true);
    void this.#superviseCritical(task, factory, p);
  }

  /** The status of task `name`, or undefined when no task of that name was spawned. */
  status(name: string): TaskStatus | undefined {
    return this.#tasks.get(name)?.status;
  }

  /** Every task with its status and restart count, in spawn order. */
  checkAll(): TaskReport[] {
    return [...this.#tasks.values()].map((t) => ({
      name: t.name,
      critical: t.critical,
      status: t.status,
      restarts: t.restarts,
    }));
  }

  /**
   * Resolves with the final status once task `name` is stopped or failed for good (a
   * restarting task is not done). Rejects when no such task exists.
   */
  done(name: string): Promise<TaskStatus> {
    const task = this.#tasks.get(name);
    if (!task) return Promise.reject(new SupervisorError(`No task named ${name}`));
    return task.done;
  }

  /**
   * Asks task `name` to stop and waits for it at most `timeoutMs`.
   * @returns true if it ended within the bound
   */
  async stop(name: string, timeoutMs: number): Promise<boolean> {
    const task = this.#tasks.get(name);
    if (!task) return true;
    task.controller.abort(new DOMException(`Task ${name} stopped`, "AbortError"));
    const stragglers = await this.#await([task], timeoutMs);
    return stragglers.length === 0;
  }

  /**
   * Aborts every task, waits for them at most `timeoutMs`, and returns the names of those
   * still running then. Spawning afterwards is refused.
   */
  async stopAll(timeoutMs: number): Promise<string[]> {
    this.#stopping = true;
    const tasks = [...this.#tasks.values()];
    log.info("Stopping {count} tasks", { count: tasks.length });
    for (const t of tasks) {
      t.controller.abort(new DOMException("Supervisor stopping", "AbortError"));
    }
    const stragglers = await this.#await(tasks, timeoutMs);
    if (stragglers.length > 0) {
      log.warn("Tasks still running {timeoutMs} ms after stop: {stragglers}", {
        timeoutMs,
        stragglers: stragglers.join(", "),
      });
    }
    return stragglers;
  }

  async #await(tasks: Task[], timeoutMs: number): Promise<string[]> {
    const finished = new Set<Task>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([
        Promise.all(tasks.map((t) => t.done.then(() => void finished.add(t)))),
        deadline,
      ]);
    } finally {
      clearTimeout(timer);
    }
    return tasks.filter((t) => !finished.has(t)).map((t) => t.name);
  }

  #register(name: string, critical: boolean): Task {
    if (this.#stopping) {
      throw new SupervisorError(`Cannot spawn task ${name}: the supervisor is stopping`);
    }
    const existing = this.#tasks.get(name);
    if (
      existing && (existing.status.state === "running" || existing.status.state === "restarting")
    ) {
      throw new SupervisorError(`Cannot spawn task ${name}: a task of that name is running`);
    }
    let settle!: Settle;
    const done = new Promise<TaskStatus>((resolve) => settle = resolve);
    const task: Task = {
      name,
      critical,
      status: { state: "running" },
      restarts: 0,
      restartTimes: [],
      controller: new AbortController(),
      done,
      settle,
    };
    // A re-spawned name replaces the finished task, keeping spawn order meaningful.
    this.#tasks.delete(name);
    this.#tasks.set(name, task);
    if (critical) log.info("Critical task {name} started", { name });
    else log.info("Task {name} started", { name });
    this.#emit(task, undefined);
    return task;
  }

  /** Runs one incarnation; never rejects. */
  async #runOnce(
    task: Task,
    fn: TaskFn,
  ): Promise<{ kind: "returned" } | { kind: "aborted" } | { kind: "failed"; status: TaskStatus }> {
    const signal = task.controller.signal;
    try {
      // The executor turns a synchronous throw into a rejection like any other failure.
      await new Promise<void>((resolve) => resolve(fn(signal)));
      return signal.aborted ? { kind: "aborted" } : { kind: "returned" };
    } catch (e) {
      if (signal.aborted && (e === signal.reason || isAbortError(e))) return { kind: "aborted" };
      const error = toError(e);
      return { kind: "failed", status: { state: "failed", error, at: new Date() } };
    }
  }

  async #superviseCritical(task: Task, factory: TaskFn, policy: Required<RestartPolicy>) {
    const signal = task.controller.signal;
    for (;;) {
      const outcome = await this.#runOnce(task, factory);
      if (outcome.kind === "aborted" || (outcome.kind === "returned" && signal.aborted)) {
        return this.#finish(task, { state: "stopped" });
      }
      const failure: TaskStatus & { state: "failed" } = outcome.kind === "failed"
        ? outcome.status as TaskStatus & { state: "failed" }
        : {
          state: "failed",
          error: new Error(`Task ${task.name} returned although it should run until stopped`),
          at: new Date(),
        };
      if (signal.aborted) {
        // A failure while stopping is reported, but restarting would defeat the stop.
        return this.#finish(task, failure);
      }
      const now = Date.now();
      task.restartTimes = task.restartTimes.filter((t) => now - t < policy.windowMs);
      const attempt = task.restartTimes.length + 1;
      if (attempt > policy.maxRestarts) {
        log.error(
          "Task {name} failed {count} times within {windowMs} ms; giving up: {error}",
          {
            name: task.name,
            count: attempt,
            windowMs: policy.windowMs,
            error: failure.error.stack ?? failure.error.message,
          },
        );
        return this.#finish(task, failure, false);
      }
      const delayMs = policy.backoffMs[Math.min(attempt, policy.backoffMs.length) - 1];
      log.warn("Task {name} failed; restart {attempt} in {delayMs} ms: {error}", {
        name: task.name,
        attempt,
        delayMs,
        error: failure.error.stack ?? failure.error.message,
      });
      this.#set(task, { state: "restarting", attempt, delayMs });
      try {
        await this.#sleep(delayMs, signal);
      } catch {
        // Only an abort interrupts the backoff; it is handled just below.
      }
      if (signal.aborted) return this.#finish(task, { state: "stopped" });
      task.restartTimes.push(Date.now());
      task.restarts++;
      log.info("Task {name} restarted (attempt {attempt})", { name: task.name, attempt });
      this.#set(task, { state: "running" });
    }
  }

  #finish(task: Task, status: TaskStatus, logIt = true): void {
    if (logIt) {
      if (status.state === "failed") {
        log.error("Task {name} failed: {error}", {
          name: task.name,
          error: status.error.stack ?? status.error.message,
        });
      } else {
        log.info("Task {name} stopped", { name: task.name });
      }
    }
    this.#set(task, status);
    task.settle(status);
  }

  #set(task: Task, status: TaskStatus): void {
    const previous = task.status;
    task.status = status;
    this.#emit(task, previous);
  }

  #emit(task: Task, previous: TaskStatus | undefined): void {
    if (!this.#onChange) return;
    try {
      this.#onChange({
        name: task.name,
        critical: task.critical,
        status: task.status,
        previous,
        restarts: task.restarts,
      });
    } catch (e) {
      log.error("onChange hook failed for task {name}: {error}", {
        name: task.name,
        error: toError(e).stack,
      });
    }
  }
}

function isAbortError(e: unknown): boolean {
  return e instanceof Error && (e.name === "AbortError" || e.name === "TimeoutError") ||
    e instanceof DOMException && e.name === "AbortError";
}

function toError(e: unknown): Error {
  if (e instanceof Error) return e;
  return new Error(`Non-error thrown: ${String(e)}`, { cause: e });
}
