/**
 * The watcher: `Deno.watchFs` on every library root, debounced; each touched path is re-checked
 * through {@link Scanner.rescanPaths} (a file is re-read if it changed, a directory is walked, a
 * vanished path is removed with everything below it), which commits and calls the scanner's
 * change listener like a scan does.
 *
 * When watching cannot start (inotify limits...) or the watch dies, the watcher falls back to
 * periodic full rescans and says so in its {@link WatchState}, in the log, and to `onState`. It
 * never swallows its own failure: a rescan that fails (a full disk...) rejects {@link
 * LibraryWatcher.run}, for the supervisor to restart it.
 */
import { logger } from "../log/mod.ts";
import type { Scanner } from "./scanner.ts";
import type { Origin } from "./types.ts";
import { coverRank } from "./walk.ts";
import { type FsWatch, openWatch } from "./watch.ts";

const log = logger("library", "watcher");

/** How the library is being kept up to date. */
export interface WatchState {
  /** `watching`: filesystem events; `polling`: periodic full rescans. */
  mode: "watching" | "polling";
  /** Why the watcher is polling. */
  reason?: string;
  /** When this mode started (ms since the epoch). */
  since: number;
}

/** Options of {@link LibraryWatcher}. */
export interface WatchOptions {
  /** Quiet time after the last event before touched paths are re-checked (default 300 ms). */
  debounceMs?: number;
  /** Re-check at the latest this long after the first event, even if events keep coming (default 2 s). */
  maxDelayMs?: number;
  /** Time between full rescans when polling (default 5 min). */
  pollMs?: number;
  /** Start in polling mode for this reason (e.g. the daemon found a network filesystem). */
  pollReason?: string;
  /** Called whenever the state changes (also once at start). */
  onState?: (state: WatchState) => void;
  /**
   * Run the watch in a worker thread (default true): its setup and event thread can then not
   * block the main thread. False keeps it on the main thread (about 6 fds fewer).
   */
  watchInWorker?: boolean;
  /**
   * The daemon's own mountpoint: events under it are never re-checked (re-checking them would
   * stat the mount from the daemon serving it). Links into it are refused by the walk.
   */
  mountpoint?: string;
}

/** Keeps a library up to date while it runs. */
export class LibraryWatcher {
  readonly #scanner: Scanner;
  readonly #origins: Origin[];
  readonly #opts: WatchOptions;
  #state: WatchState;
  #current: FsWatch | undefined;
  #stopReason: string | undefined;

  /** A watcher of `origins` (as stored in the scanner's database). */
  constructor(scanner: Scanner, origins: Origin[], options: WatchOptions = {}) {
    this.#scanner = scanner;
    // Longest root first, so a root nested in another one claims its own paths.
    this.#origins = [...origins].sort((a, b) => b.path.length - a.path.length);
    this.#opts = options;
    this.#state = options.pollReason
      ? { mode: "polling", reason: options.pollReason, since: Date.now() }
      : { mode: "watching", since: Date.now() };
  }

  /**
   * Give up on filesystem events and poll from now on, for `reason` (e.g. a FIFO in the library:
   * the event thread opens each file it hears about, and a FIFO holds it there for good).
   */
  stopWatching(reason: string): void {
    if (this.#state.mode === "polling" || this.#stopReason) return;
    this.#stopReason = reason;
    this.#current?.close();
  }

  /** The current mode, and why when polling. */
  get state(): WatchState {
    return { ...this.#state };
  }

  #setState(state: WatchState): void {
    this.#state = state;
    if (state.mode === "polling") {
      log.warn("Not watching the library for changes ({reason}); rescanning every {s} s instead", {
        reason: state.reason,
        s: Math.round((this.#opts.pollMs ?? 300_000) / 1000),
      });
    }
    try {
      this.#opts.onState?.(this.state);
    } catch (e) {
      log.error("Watch state listener failed: {error}", { error: e });
    }
  }

  /**
   * Watch until `signal` aborts (then resolve). Rejects when a re-check or a polling rescan fails.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    if (this.#state.mode === "polling") {
      this.#setState(this.#state);
      return await this.#poll(signal);
    }
    let watcher: FsWatch;
    try {
      // In a worker: the setup walks every folder (following symlinks, maybe into a hung share
      // or this daemon's own mount), which must not block the thread serving the mount.
      watcher = await openWatch(
        this.#origins.map((o) => o.path),
        undefined,
        this.#opts.watchInWorker ?? true,
      );
      if (signal.aborted) {
        watcher.close();
        return;
      }
    } catch (e) {
      this.#setState({
        mode: "polling",
        reason: `cannot watch: ${messageOf(e)}`,
        since: Date.now(),
      });
      return await this.#poll(signal);
    }
    if (this.#stopReason) {
      watcher.close();
      this.#setState({ mode: "polling", reason: this.#stopReason, since: Date.now() });
      return await this.#poll(signal);
    }
    this.#current = watcher;
    this.#setState({ mode: "watching", since: Date.now() });
    const died = await this.#watch(watcher, signal);
    this.#current = undefined;
    if (signal.aborted) return;
    this.#setState({
      mode: "polling",
      reason: this.#stopReason ?? `the watch stopped: ${died}`,
      since: Date.now(),
    });
    // What happened while the watch was dying is unknown: rescan now, then poll.
    await this.#rescanAll(signal);
    return await this.#poll(signal);
  }

  /** Feed events to debounced re-checks until aborted (returns undefined) or the watch dies. */
  async #watch(watcher: FsWatch, signal: AbortSignal): Promise<string | undefined> {
    const debounceMs = this.#opts.debounceMs ?? 300;
    const maxDelayMs = this.#opts.maxDelayMs ?? 2000;
    const pending = new Map<number, Set<string>>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let firstAt = 0;
    let flushing: Promise<void> = Promise.resolve();
    let failure: unknown;
    const onAbort = () => watcher.close();
    signal.addEventListener("abort", onAbort, { once: true });

    const flush = () => {
      timer = undefined;
      const work = [...pending.entries()];
      pending.clear();
      flushing = flushing.then(async () => {
        if (failure !== undefined || signal.aborted) return;
        for (const [originId, paths] of work) {
          const origin = this.#origins.find((o) => o.id === originId)!;
          try {
            await this.#scanner.rescanPaths(origin, [...paths], { signal });
          } catch (e) {
            if (signal.aborted) return;
            failure = e;
            // Ends the event loop below; the failure is rethrown from run().
            watcher.close();
            return;
          }
        }
      });
    };

    let died: string | undefined;
    try {
      for await (const ev of watcher) {
        if (ev.kind === "access") continue;
        for (const path of ev.paths) this.#note(pending, path);
        if (pending.size === 0) continue;
        const now = Date.now();
        if (timer === undefined) firstAt = now;
        clearTimeout(timer);
        timer = setTimeout(flush, Math.max(0, Math.min(debounceMs, firstAt + maxDelayMs - now)));
      }
      if (!signal.aborted && failure === undefined) died = "the event stream ended";
    } catch (e) {
      if (!signal.aborted && failure === undefined) died = messageOf(e);
    } finally {
      signal.removeEventListener("abort", onAbort);
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
    }
    await flushing;
    if (failure !== undefined) throw failure;
    return died;
  }

  /** Record the path an event touched, as the scope to re-check in its origin. */
  #note(pending: Map<number, Set<string>>, path: string): void {
    const mp = this.#opts.mountpoint;
    if (mp && (path === mp || path.startsWith(mp + "/"))) return;
    const origin = this.#origins.find((o) => path === o.path || path.startsWith(o.path + "/"));
    if (!origin) return;
    let rel = path === origin.path ? "" : path.slice(origin.path.length + 1);
    if (rel.split("/").some((c) => c.startsWith("."))) return;
    // A cover image belongs to its directory's record: re-check the directory.
    const name = rel.slice(rel.lastIndexOf("/") + 1);
    if (coverRank(name) >= 0) rel = rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "";
    let set = pending.get(origin.id);
    if (!set) pending.set(origin.id, set = new Set());
    set.add(rel);
  }

  async #poll(signal: AbortSignal): Promise<void> {
    const pollMs = this.#opts.pollMs ?? 300_000;
    while (!signal.aborted) {
      await sleep(pollMs, signal);
      if (signal.aborted) return;
      await this.#rescanAll(signal);
    }
  }

  async #rescanAll(signal: AbortSignal): Promise<void> {
    for (const origin of this.#origins) {
      try {
        await this.#scanner.scanOrigin(origin, { signal });
      } catch (e) {
        if (signal.aborted) return;
        throw e;
      }
    }
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Watch `origins` until `signal` aborts: a {@link LibraryWatcher} run. Rejects when keeping the
 * library up to date fails.
 */
export function watchLibrary(
  scanner: Scanner,
  origins: Origin[],
  options: WatchOptions & { signal: AbortSignal },
): Promise<void> {
  return new LibraryWatcher(scanner, origins, options).run(options.signal);
}
