/**
 * The scanner as a supervised task: one scan at a time, retried with backoff when it fails (a
 * full state dir, an I/O error) while the tree already served stays as it is, with its
 * progress and retries kept for status.
 */
import type { Database, Scanner, ScanProgress } from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import type { ChangeHub } from "./change_hub.ts";
import * as systemd from "./sd_notify.ts";
import type { DaemonStatus } from "./status.ts";
import type { TaskSupervisor } from "./supervisor.ts";

const log = logger("daemon");

/** Delays before scan retries 1, 2, 3...; the last repeats. */
const SCAN_RETRY_MS = [2000, 5000, 10_000, 20_000];

/** What the scan task drives and reports to. */
export interface ScanTaskOptions {
  supervisor: TaskSupervisor;
  scanner: Scanner;
  db: Database;
  /** The library roots scanned. */
  roots: string[];
  /** Its change listener's timings make the scan's debug stage line. */
  hub: ChangeHub;
  /** Why library.db is served read-only at start (a full state dir), if it is. */
  readOnly?: string;
  /** True once shutdown began: no retry is scheduled then. */
  shuttingDown: () => boolean;
  /** Tracks in the tree, for the systemd status line. */
  trackCount: () => number;
  /** Progress at most every 250 ms, and `final` once a scan ended (also a failed one). */
  onProgress?: (final: boolean) => void;
}

/** Runs and retries scans under the supervisor. */
export class ScanTask {
  /** The last progress report of the current or last scan. */
  progress: ScanProgress | null = null;
  /** Whether a scan has ended since start (`mount --wait` waits for it). */
  firstScanDone = false;
  /** Why library.db is served read-only, until it can be written again. */
  readOnly: string | undefined;
  readonly #opts: ScanTaskOptions;
  readonly #retry: {
    failures: number;
    reason?: string;
    at?: number;
    timer?: ReturnType<typeof setTimeout>;
  } = { failures: 0 };

  /** A scan task; nothing runs before {@link start}. */
  constructor(opts: ScanTaskOptions) {
    this.#opts = opts;
    this.readOnly = opts.readOnly;
  }

  /** Whether a scan runs now. */
  get active(): boolean {
    return this.#opts.supervisor.status("scanner")?.state === "running";
  }

  /** Start a scan unless one runs (false then); cancels a pending retry. */
  start(): boolean {
    const { supervisor, scanner, db, hub } = this.#opts;
    const retry = this.#retry;
    if (this.active) return false;
    if (retry.timer !== undefined) clearTimeout(retry.timer);
    retry.timer = undefined;
    retry.at = undefined;
    supervisor.spawnSupervised("scanner", async (signal) => {
      try {
        if (db.frozen && !db.unfreeze()) {
          throw new Error(`library.db cannot be written yet (${this.readOnly})`);
        }
        if (this.readOnly && !db.frozen) {
          log.info("The state dir can be written again: scanning");
          this.readOnly = undefined;
        }
        hub.resetTimings();
        let told = 0;
        await scanner.scan(this.#opts.roots, {
          signal,
          // Every file: status must never show fewer files read than tracks in the tree
          // (the tree fills from commits, which follow the reads). Only the kept copy is
          // per file; systemd and the progress bar hear at most every 250 ms.
          progressMs: 0,
          onProgress: (p) => {
            this.progress = p;
            const now = performance.now();
            if (now - told < 250 && p.phase !== "done") return;
            told = now;
            systemd.status(`scan ${p.phase}: ${p.parsed}/${p.total} files read`);
            this.#opts.onProgress?.(false);
          },
        });
        log.debug(
          "Scan change listener: tree {tree} ms, kernel invalidations {invalidate} ms, " +
            "search {search} ms",
          {
            tree: Math.round(hub.timings.tree),
            invalidate: Math.round(hub.timings.invalidate),
            search: Math.round(hub.timings.search),
          },
        );
      } catch (e) {
        if (signal.aborted || this.#opts.shuttingDown()) throw e;
        const delayMs = SCAN_RETRY_MS[Math.min(retry.failures, SCAN_RETRY_MS.length - 1)];
        retry.failures++;
        retry.reason = (e as Error).message;
        retry.at = Date.now() + delayMs;
        log.warn("The scan failed ({reason}); serving the stored tree, retry {n} in {s} s", {
          reason: retry.reason,
          n: retry.failures,
          s: delayMs / 1000,
        });
        retry.timer = setTimeout(() => {
          retry.timer = undefined;
          if (!this.#opts.shuttingDown()) this.start();
        }, delayMs);
        throw e;
      } finally {
        // Also when the scan failed: `mount --wait` must not wait for a scan that ended.
        this.firstScanDone = true;
        this.#opts.onProgress?.(true);
      }
      retry.failures = 0;
      retry.reason = undefined;
      systemd.status(`serving ${this.#opts.trackCount()} tracks`);
    });
    return true;
  }

  /** Cancel a pending retry (at shutdown). */
  cancelRetry(): void {
    if (this.#retry.timer !== undefined) clearTimeout(this.#retry.timer);
  }

  /** The `scan` part of status. */
  scanStatus(): DaemonStatus["scan"] {
    const p = this.progress;
    return p && {
      active: this.active,
      phase: p.phase,
      root: p.root,
      seen: p.seen,
      unchanged: p.unchanged,
      total: p.total,
      parsed: p.parsed,
      committed: p.committed,
      walkDone: p.walkDone,
    };
  }

  /** The `scanRetry` part of status. */
  retryStatus(): DaemonStatus["scanRetry"] {
    const r = this.#retry;
    return r.failures
      ? {
        failures: r.failures,
        reason: r.reason,
        nextAt: r.at === undefined ? undefined : new Date(r.at).toISOString(),
      }
      : null;
  }
}
