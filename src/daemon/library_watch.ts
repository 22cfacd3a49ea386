/**
 * Watching the libraries for changes, as a supervised task, with its state per origin for
 * status. The watch's event thread opens each file it hears about, and a FIFO would hold it
 * for good: with one in the library, it polls instead.
 */
import {
  LibraryWatcher,
  type Origin,
  type Problem,
  revalidateMsFromEnv,
  type Scanner,
  type WatchState,
} from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import type { TaskSupervisor } from "./supervisor.ts";

const log = logger("daemon");

/** The library watch of one daemon. */
export class LibraryWatch {
  /** How each origin is watched (absent: watching). */
  readonly states = new Map<number, WatchState>();
  readonly #origins: readonly Origin[];
  readonly #problems: () => Problem[];
  #watcher: LibraryWatcher | undefined;

  /** `problems`: this mount's problem list (where a FIFO shows up). */
  constructor(origins: readonly Origin[], problems: () => Problem[]) {
    this.#origins = origins;
    this.#problems = problems;
  }

  /** Switch to polling when the problem list now holds a FIFO. */
  stopWatchingIfFifo(): void {
    const p = this.#watcher && this.#fifo();
    if (p) this.#watcher!.stopWatching(this.#fifoReason(p));
  }

  /**
   * Spawn the watcher task. Deno.watchFs sets up its inotify watches synchronously (0.5 s at
   * 16k folders): call this only once the mount is up and reported ready.
   */
  spawn(
    supervisor: TaskSupervisor,
    scanner: Scanner,
    opts: { mountpoint: string; fdLimit: number },
  ): void {
    supervisor.spawnCritical("watcher", (signal) => {
      const known = this.#fifo();
      const watcher = this.#watcher = new LibraryWatcher(scanner, [...this.#origins], {
        mountpoint: opts.mountpoint,
        // A worker thread costs about 6 fds: only with a workable fd limit (not `ulimit -n 64`).
        watchInWorker: opts.fdLimit >= 256,
        pollReason: known && this.#fifoReason(known),
        revalidateMs: revalidateMsFromEnv(),
        onState: (s: WatchState) => {
          for (const o of this.#origins) this.states.set(o.id, s);
          if (s.mode === "polling") {
            log.warn("Watching failed ({reason}); rescanning periodically", { reason: s.reason });
          }
        },
      });
      return watcher.run(signal);
    });
  }

  #fifo(): Problem | undefined {
    return this.#problems().find((p) => p.reason.startsWith("a FIFO"));
  }

  #fifoReason(p: Problem): string {
    const root = this.#origins.find((o) => o.id === p.originId)?.path;
    return `a FIFO in the library (${root}/${p.relPath}) stalls file events`;
  }
}
