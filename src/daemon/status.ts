/**
 * The status document: GET /status of the control API, `/.musicfs/status.json` in the mount,
 * and what `musicfs status` and `musicfs mount --wait` read. One type for the daemon that
 * writes it and the CLI that reads it.
 *
 * @module
 */
import type { TaskReportJson } from "./supervisor.ts";

/** Scan progress. Counts are files; they never contradict each other (see each field). */
export interface ScanStatus {
  /** Running now (false once the last origin is done, or the scan failed or was stopped). */
  active: boolean;
  /**
   * `walking`: listing folders while reading; `parsing`: the walk is done, the last files are
   * being read; `removing`: dropping what vanished; `done`.
   */
  phase: string;
  /** The library root being scanned. */
  root?: string;
  /** Audio files the walk found so far. */
  seen: number;
  /** Of those, unchanged since the last scan (not read again). */
  unchanged: number;
  /** New or changed files to read: final once `walkDone`. */
  total: number;
  /** Of `total`, read so far (as tracks, or as problems when unreadable). */
  parsed: number;
  /** Of `parsed`, committed to library.db. */
  committed: number;
  /** Whether `total` is final. */
  walkDone?: boolean;
}

/** A supervised task, as the supervisor reports it. */
export type TaskStatusJson = TaskReportJson;

/** A library root. */
export interface OriginStatus {
  id: number | string;
  path: string;
  healthy: boolean;
  consecutiveFailures: number;
  watch: "watching" | "polling";
  /** Why the origin is polled or unhealthy. */
  reason?: string;
}

/** The status document (the contract between the daemon and the CLI). */
export interface DaemonStatus {
  pid: number;
  version: string;
  mountpoint: string;
  /** The daemon's state dir. */
  stateDir?: string;
  /** ms since the epoch. */
  startedAt: number;
  uptimeMs: number;
  /** Tracks served now (in the tree). */
  tracks: number;
  /** Files left out because they cannot be read (listed in /.musicfs/problems.txt). */
  problems?: number;
  /**
   * What the library could not use, by kind (each a problems.txt line; hidden folders are one
   * line per root with their count).
   */
  problemKinds?: { files: number; folders: number; symlinks: number; hiddenFolders: number };
  /** The current or last scan; null before the first progress report. */
  scan: ScanStatus | null;
  /** Whether a first scan since start has finished (what `mount --wait` waits for). */
  firstScanDone?: boolean;
  tasks: TaskStatusJson[];
  origins: OriginStatus[];
  /** Null when the cache is off. */
  cache: {
    chunks: number;
    bytes: number;
    maxSize: number;
    mode: string;
    /** Chunk stores that failed (e.g. the cache disk is full); reads were served anyway. */
    failedWrites?: number;
    /** The last such failure, with its time. */
    lastWriteError?: string;
  } | null;
  search: { state: "loading" | "ready" | "failed" | string; documents: number };
  fuse?: {
    requests: number;
    errors: number;
    inflight: number;
    passthrough: boolean;
    /** Opens whose passthrough failed and were served in userspace (that open only). */
    passthroughFallbacks?: number;
    /** Source opens past their deadline that have not returned yet (a hung library). */
    stuckOpens?: number;
  };
  /** Why library.db is served read-only (a full state dir); null when it is writable. */
  readOnly?: string | null;
  /** Set while scans fail (e.g. a full state dir): the stored tree is served meanwhile. */
  scanRetry?: { failures: number; reason?: string; nextAt?: string } | null;
  /**
   * The startup check of library.db (integrity_check, track invariants) and the cross-check
   * of the tracks against their sources, run after the mount serves.
   */
  integrity?: {
    ok: boolean;
    ms: number;
    reason?: string;
    sources?: { checked: number; missing: number; skipped: number; ms: number } | null;
  } | null;
  /**
   * Memory in MB: the process's resident set, the JS heap (used and reserved) and memory held
   * outside it; and where the tree is served from: `memory` (built) or `rows` (library.db).
   */
  memory?: {
    rssMB: number;
    heapUsedMB: number;
    heapTotalMB: number;
    externalMB: number;
    tree: "memory" | "rows";
  };
  /** File descriptors: the limit, the reserve, source files open, opens refused (EMFILE). */
  fds?: {
    limit: number;
    reserve?: number;
    sourcesOpen: number;
    refused: number;
    lastRefusedAt?: string;
  } | null;
}
