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
import { coverRank, isHiddenPath } from "./walk.ts";
import type { WatchSet } from "./watch_set.ts";
import { openWatch } from "./watch.ts";
import { abortableSleep } from "../util/mod.ts";

/** What {@link LibraryWatcher}'s event loop returns to have its watches set up again. */
const REWATCH = "\0rewatch";

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
  /**
   * Time between full revalidations while watching (default {@link REVALIDATE_MS}): what
   * inotify cannot see (changes inside a symlinked folder, a network share's changes made
   * elsewhere) shows up at the latest after this long. 0 disables it.
   */
  revalidateMs?: number;
  /** Start in polling mode for this reason (e.g. the daemon found a network filesystem). */
  pollReason?: string;
  /** Called whenever the state changes (also once at start). */
  onState?: (state: WatchState) => void;
  /**
   * Run the watch in a worker thread (default true): its setup (which follows symlinks, maybe
   * into a hung share or the daemon's own mount) and its event thread (which a FIFO can hold for
   * good) then never block the main thread. False keeps it here (about 6 fds fewer).
   */
  watchInWorker?: boolean;
  /**
   * The daemon's own mountpoint: events under it are never re-checked (that would stat the
   * mount from the daemon serving it). Links into it are refused by the walk.
   */
  mountpoint?: string;
}

/**
 * Default time between the full revalidations of a watched library (5 min). inotify does not
 * report everything: a symlink to a folder created in the library gives no event, and nothing
 * inside a symlinked folder is watched. A revalidation of an unchanged library only walks and
 * stats it (about 0.65 s per 100,000 files).
 */
export const REVALIDATE_MS = 300_000;

/**
 * The revalidation interval from `MUSICFS_REVALIDATE_SECONDS` (0 turns it off), else
 * {@link REVALIDATE_MS}. A value that is not a number is ignored with a warning.
 */
export function revalidateMsFromEnv(): number {
  const raw = Deno.env.get("MUSICFS_REVALIDATE_SECONDS");
  if (raw === undefined || raw.trim() === "") return REVALIDATE_MS;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0) {
    log.warn("Ignoring MUSICFS_REVALIDATE_SECONDS={raw}: not a number of seconds", { raw });
    return REVALIDATE_MS;
  }
  return Math.round(s * 1000);
}

/** Keeps a library up to date while it runs. */
export class LibraryWatcher {
  readonly #scanner: Scanner;
  readonly #origins: Origin[];
  readonly #opts: WatchOptions;
  #state: WatchState;
  #current: WatchSet | undefined;
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

  /** The current mode, and why when polling. */
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
    let first = true;
    for (;;) {
      let watcher: WatchSet;
      try {
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
        // Whatever happened since the last look is unknown when this is a re-watch.
        if (!first) await this.#rescanAll(signal);
        return await this.#poll(signal);
      }
      if (watcher.skipped.length > 0) {
        log.info("Watching the library except {n} folder(s) that cannot be entered: {paths}", {
          n: watcher.skipped.length,
          paths: watcher.skipped.join(", "),
        });
      }
      if (this.#stopReason) {
        watcher.close();
        this.#setState({ mode: "polling", reason: this.#stopReason, since: Date.now() });
        return await this.#poll(signal);
      }
      this.#current = watcher;
      if (first) this.#setState({ mode: "watching", since: Date.now() });
      first = false;
      const stopRevalidating = new AbortController();
      let failure: unknown;
      const revalidating = this.#revalidate(AbortSignal.any([signal, stopRevalidating.signal]))
        .catch((e) => {
          // A failed revalidation fails the watcher like a failed re-check does.
          failure = e;
          watcher.close();
        });
      let died: string | undefined;
      try {
        died = await this.#watch(watcher, signal);
      } finally {
        stopRevalidating.abort();
        await revalidating;
      }
      this.#current = undefined;
      if (failure !== undefined) throw failure;
      if (signal.aborted) return;
      if (this.#stopReason) {
        this.#setState({ mode: "polling", reason: this.#stopReason, since: Date.now() });
        await this.#rescanAll(signal);
        return await this.#poll(signal);
      }
      if (died === REWATCH) continue;
      this.#setState({ mode: "polling", reason: `the watch stopped: ${died}`, since: Date.now() });
      // What happened while the watch was dying is unknown: rescan now, then poll.
      await this.#rescanAll(signal);
      return await this.#poll(signal);
    }
  }

  /** Feed events to debounced re-checks until aborted (returns undefined) or the watch dies. */
  async #watch(watcher: WatchSet, signal: AbortSignal): Promise<string | undefined> {
    const debounceMs = this.#opts.debounceMs ?? 300;
    const maxDelayMs = this.#opts.maxDelayMs ?? 2000;
    const pending = new Map<number, Set<string>>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let firstAt = 0;
    let flushing: Promise<void> = Promise.resolve();
    let failure: unknown;
    // A folder left out of the watch changed (its permissions, most likely): once its re-check
    // is done, set the watches up again so that it is watched too if it can be now.
    const skipped = new Set(watcher.skipped);
    let rewatch = false;
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
        if (rewatch) watcher.close();
      });
    };

    let died: string | undefined;
    try {
      for await (const ev of watcher) {
        if (ev.kind === "access") continue;
        for (const path of ev.paths) {
          this.#note(pending, path);
          if (skipped.has(path)) rewatch = true;
        }
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
    // Paths noted before a re-watch closed the watches are still re-checked.
    if (rewatch && pending.size > 0) flush();
    await flushing;
    if (failure !== undefined) throw failure;
    return rewatch && !signal.aborted ? REWATCH : died;
  }

  /** Record the path an event touched, as the scope to re-check in its origin. */
  #note(pending: Map<number, Set<string>>, path: string): void {
    const mp = this.#opts.mountpoint;
    if (mp && (path === mp || path.startsWith(mp + "/"))) return;
    const origin = this.#origins.find((o) => path === o.path || path.startsWith(o.path + "/"));
    if (!origin) return;
    let rel = path === origin.path ? "" : path.slice(origin.path.length + 1);
    if (isHiddenPath(rel)) return;
    // A cover image belongs to its directory's record: re-check the directory.
    const name = rel.slice(rel.lastIndexOf("/") + 1);
    if (coverRank(name) >= 0) rel = rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "";
    let set = pending.get(origin.id);
    if (!set) pending.set(origin.id, set = new Set());
    set.add(rel);
  }

  /** Full revalidations every `revalidateMs` until `signal` aborts. */
  async #revalidate(signal: AbortSignal): Promise<void> {
    const ms = this.#opts.revalidateMs ?? REVALIDATE_MS;
    if (ms <= 0) return;
    while (!signal.aborted) {
      await abortableSleep(ms, signal);
      if (signal.aborted) return;
      await this.#rescanAll(signal);
    }
  }

  async #poll(signal: AbortSignal): Promise<void> {
    const pollMs = this.#opts.pollMs ?? 300_000;
    while (!signal.aborted) {
      await abortableSleep(pollMs, signal);
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
