/**
 * Signals, the ordered shutdown, and the guards that keep one stray exception from killing
 * the mount.
 *
 * - SIGINT / SIGTERM start the shutdown once; the same signal again while it runs exits at
 *   once (130 for SIGINT, 143 for SIGTERM): the user asked twice.
 * - SIGHUP asks for a rescan.
 * - {@link runShutdown} runs the teardown steps in order, each bounded, past failures.
 *
 * @module
 */
import { logger } from "../log/mod.ts";

const log = logger("daemon", "shutdown");

/** One step of the ordered shutdown. */
export interface ShutdownStep {
  /** Shown in the log and the report. */
  name: string;
  /** The work; `signal` aborts when the step's time is up. */
  run: (signal: AbortSignal) => Promise<void> | void;
  /** Bound on this step; default {@link RunShutdownOptions.defaultTimeoutMs}. */
  timeoutMs?: number;
}

/** How one step went. */
export interface StepReport {
  /** The step's name. */
  name: string;
  /** Whether it finished, threw, or outlived its bound. */
  outcome: "ok" | "failed" | "timed out";
  /** The failure, for `failed`. */
  error?: Error;
  /** Time spent waiting for it. */
  durationMs: number;
}

/** How the whole shutdown went. */
export interface ShutdownReport {
  /** True when every step succeeded in time. */
  ok: boolean;
  /** One report per step, in order. */
  steps: StepReport[];
}

/** Options of {@link runShutdown}. */
export interface RunShutdownOptions {
  /** Bound for steps that set none. Default 5000 ms. */
  defaultTimeoutMs?: number;
}

/**
 * Runs `steps` one after another. A step that throws or outlives its bound is reported and
 * the next step runs anyway: a failed search commit must not keep SQLite from being
 * checkpointed or the mount from being released. A timed-out step is left running with its
 * signal aborted.
 */
export async function runShutdown(
  steps: ShutdownStep[],
  options: RunShutdownOptions = {},
): Promise<ShutdownReport> {
  const defaultTimeoutMs = options.defaultTimeoutMs ?? 5000;
  const reports: StepReport[] = [];
  for (const step of steps) {
    const timeoutMs = step.timeoutMs ?? defaultTimeoutMs;
    const controller = new AbortController();
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timed out">((resolve) => {
      timer = setTimeout(() => resolve("timed out"), timeoutMs);
    });
    let report: StepReport;
    try {
      const result = await Promise.race([
        new Promise<void>((resolve) => resolve(step.run(controller.signal))).then(() =>
          "ok" as const
        ),
        timedOut,
      ]);
      report = { name: step.name, outcome: result, durationMs: performance.now() - started };
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e), { cause: e });
      report = {
        name: step.name,
        outcome: "failed",
        error,
        durationMs: performance.now() - started,
      };
    } finally {
      clearTimeout(timer);
    }
    if (report.outcome === "timed out") {
      controller.abort(new DOMException(`Step ${step.name} timed out`, "TimeoutError"));
      log.warn("Shutdown step {step} did not finish within {timeoutMs} ms; going on", {
        step: step.name,
        timeoutMs,
      });
    } else if (report.outcome === "failed") {
      log.error("Shutdown step {step} failed: {error}", {
        step: step.name,
        error: report.error?.stack ?? report.error?.message,
      });
    } else {
      log.info("Shutdown step {step} done in {ms} ms", {
        step: step.name,
        ms: Math.round(report.durationMs),
      });
    }
    reports.push(report);
  }
  return { ok: reports.every((r) => r.outcome === "ok"), steps: reports };
}

/** Options of {@link installSignalHandlers}. */
export interface SignalHandlerOptions {
  /** The ordered shutdown; runs at most once. The process exits when it settles. */
  onShutdown: () => Promise<void>;
  /** SIGHUP. */
  onRescan: () => void;
  /** How to end the process; default Deno.exit. */
  exit?: (code: number) => void;
}

/** Installed signal handling. */
export interface SignalHandlers {
  /**
   * Starts the shutdown as a signal would (e.g. for POST /shutdown); later calls return the
   * same promise. The process exits 0 when `onShutdown` resolves, 1 when it rejects.
   */
  requestShutdown(reason: string): Promise<void>;
  /** True once the shutdown has started. */
  readonly shuttingDown: boolean;
  /** Removes the listeners (the default actions come back only in a fresh process). */
  uninstall(): void;
}

/** Routes SIGINT/SIGTERM to the shutdown and SIGHUP to a rescan. */
export function installSignalHandlers(options: SignalHandlerOptions): SignalHandlers {
  const exit = options.exit ?? ((code: number) => Deno.exit(code));
  let shutdown: Promise<void> | null = null;

  const requestShutdown = (reason: string): Promise<void> => {
    if (shutdown) return shutdown;
    log.info("Shutting down ({reason})", { reason });
    shutdown = (async () => {
      let code = 0;
      try {
        await options.onShutdown();
        log.info("Shutdown complete");
      } catch (e) {
        code = 1;
        log.error("Shutdown failed: {error}", { error: (e as Error)?.stack ?? e });
      }
      exit(code);
    })();
    return shutdown;
  };

  const onTerminate = (signal: "SIGINT" | "SIGTERM", code: number) => () => {
    if (shutdown) {
      log.warn("{signal} again during shutdown: exiting now", { signal });
      exit(code);
      return;
    }
    void requestShutdown(signal);
  };
  const onInt = onTerminate("SIGINT", 130);
  const onTerm = onTerminate("SIGTERM", 143);
  const onHup = () => {
    if (shutdown) {
      log.info("SIGHUP ignored: shutting down");
      return;
    }
    log.info("SIGHUP: rescanning");
    try {
      options.onRescan();
    } catch (e) {
      log.error("Rescan on SIGHUP failed: {error}", { error: (e as Error)?.stack ?? e });
    }
  };
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGHUP", onHup);

  return {
    requestShutdown,
    get shuttingDown() {
      return shutdown !== null;
    },
    uninstall() {
      Deno.removeSignalListener("SIGINT", onInt);
      Deno.removeSignalListener("SIGTERM", onTerm);
      Deno.removeSignalListener("SIGHUP", onHup);
    },
  };
}

/** Options of {@link installCrashGuards}. */
export interface CrashGuardOptions {
  /** Called after logging, e.g. to count faults in status.json. */
  onCrash?: (error: unknown, kind: "error" | "unhandledrejection") => void;
}

/**
 * Logs uncaught exceptions and unhandled rejections with their stack and keeps the process
 * alive: a bug in one background callback must not take the mount down silently. Failures
 * that matter are still surfaced, by the supervisor and by the code that awaits them.
 * @returns a function removing the guards
 */
export function installCrashGuards(options: CrashGuardOptions = {}): () => void {
  const report = (error: unknown, kind: "error" | "unhandledrejection") => {
    log.error("Unhandled {kind}, kept alive: {error}", {
      kind: kind === "error" ? "exception" : "rejection",
      error: (error as Error)?.stack ?? String(error),
    });
    try {
      options.onCrash?.(error, kind);
    } catch { /* the guard itself must not throw */ }
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    report(event.error ?? event.message, "error");
  };
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    report(event.reason, "unhandledrejection");
  };
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onRejection);
  return () => {
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  };
}
