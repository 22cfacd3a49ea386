/**
 * `musicfs status [--json]`: what the running daemon reports on GET /status.
 *
 * @module
 */
import { DaemonNotRunningError } from "../../daemon/mod.ts";
import { formatBytes } from "../../cas/mod.ts";
import {
  askDaemon,
  type CommandIo,
  consoleIo,
  type DaemonOptions,
  formatDuration,
  notRunningError,
  reportError,
} from "./common.ts";

/** Scan progress as the daemon reports it. */
export interface ScanStatus {
  /** E.g. "walking", "parsing", "revalidating". */
  phase: string;
  seen: number;
  /** Files expected, when known. */
  total?: number | null;
  parsed: number;
  committed: number;
}

/** A supervised task as the daemon reports it. */
export interface TaskStatusJson {
  name: string;
  critical: boolean;
  status: {
    state: string;
    error?: string;
    /** When it failed: ms since the epoch or ISO 8601. */
    at?: number | string;
    attempt?: number;
  };
  restarts: number;
}

/** A library root as the daemon reports it. */
export interface OriginStatus {
  id: number | string;
  path: string;
  healthy: boolean;
  consecutiveFailures: number;
  watch: "watching" | "polling";
  /** Why the origin is polled or unhealthy. */
  reason?: string;
}

/** The body of GET /status (the contract between the daemon and this command). */
export interface DaemonStatus {
  pid: number;
  version: string;
  mountpoint: string;
  /** ms since the epoch. */
  startedAt: number;
  uptimeMs: number;
  tracks: number;
  /** What the library could not use, by kind (absent from older daemons). */
  problems?: { files: number; folders: number; symlinks: number; hiddenFolders: number };
  /** Null when no scan runs. */
  scan: ScanStatus | null;
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
  search: { state: "loading" | "ready" | "failed"; documents: number };
}

/** Options of {@link statusCommand}. */
export interface StatusOptions extends DaemonOptions {
  /** Print the daemon's JSON instead of the human summary. */
  json?: boolean;
  /** Where to print; default stdout/stderr. */
  io?: CommandIo;
}

/**
 * Asks the daemon of `opts.stateDir` for its status and prints it. Resolves to the exit code:
 * 0, or 1 when no daemon answers.
 */
export async function statusCommand(opts: StatusOptions): Promise<number> {
  const io = opts.io ?? consoleIo;
  try {
    let status: unknown;
    try {
      status = await askDaemon(opts, "GET", "/status");
    } catch (e) {
      if (e instanceof DaemonNotRunningError) throw notRunningError();
      throw e;
    }
    if (opts.json) io.out(JSON.stringify(status, null, 2));
    else for (const line of formatStatus(status as Partial<DaemonStatus>)) io.out(line);
    return 0;
  } catch (e) {
    return reportError(io, e, "see the daemon's log");
  }
}

/**
 * The human summary of a status document, one string per line. Tolerates missing fields (an
 * older or newer daemon) by leaving their lines out or showing `?`.
 */
export function formatStatus(s: Partial<DaemonStatus>, now = Date.now()): string[] {
  const lines: string[] = [];
  const uptime = typeof s.uptimeMs === "number"
    ? s.uptimeMs
    : typeof s.startedAt === "number"
    ? now - s.startedAt
    : NaN;
  lines.push(
    `musicfs${s.version ? ` ${s.version}` : ""} is running (pid ${s.pid ?? "?"}), up ${
      formatDuration(uptime)
    }`,
  );
  const row = (label: string, value: string) => lines.push(`${label.padEnd(11)} ${value}`);
  row("mountpoint", s.mountpoint ?? "?");
  row("tracks", String(s.tracks ?? "?"));
  if (s.problems) {
    const p = s.problems;
    row(
      "skipped",
      `${p.files} unreadable files, ${p.folders} folders, ${p.symlinks} symlinks, ${p.hiddenFolders} hidden folders (see problems.txt)`,
    );
  }
  row("scan", s.scan ? formatScan(s.scan) : "idle");
  if (s.search) {
    const docs = `${s.search.documents ?? "?"} documents`;
    row("search", `${s.search.state} (${docs})`);
  }
  if (s.cache) {
    const c = s.cache;
    row(
      "cache",
      `${c.chunks} chunks, ${formatBytes(c.bytes)} of ${formatBytes(c.maxSize)} (reads: ${c.mode})`,
    );
    if (c.failedWrites) {
      row("", `${c.failedWrites} chunk writes failed, last: ${c.lastWriteError ?? "unknown"}`);
    }
  } else if (s.cache === null) {
    row("cache", "off");
  }
  const tasks = s.tasks ?? [];
  if (tasks.length) {
    lines.push("tasks");
    const width = Math.max(...tasks.map((t) => String(t.name).length));
    for (const t of tasks) lines.push(`  ${String(t.name).padEnd(width)}  ${formatTask(t)}`);
  }
  const origins = s.origins ?? [];
  if (origins.length) {
    lines.push("origins");
    const width = Math.max(...origins.map((o) => String(o.path).length));
    for (const o of origins) lines.push(`  ${String(o.path).padEnd(width)}  ${formatOrigin(o)}`);
  }
  return lines;
}

function formatScan(scan: ScanStatus): string {
  const total = typeof scan.total === "number" && scan.total > 0 ? scan.total : undefined;
  const done = total
    ? `${scan.committed} of ${total} committed (${Math.floor((scan.committed / total) * 100)}%)`
    : `${scan.committed} committed`;
  return `${scan.phase}: ${done}, ${scan.seen} seen, ${scan.parsed} parsed`;
}

function formatTask(t: TaskStatusJson): string {
  // A flat report (taskReportToJson) carries the status fields at the top level.
  const flat = t as unknown as Partial<TaskStatusJson["status"]>;
  const st = t.status ?? { state: flat.state ?? "?", ...flat };
  let text = st.state;
  if (st.state === "failed") {
    const at = st.at === undefined ? "" : ` at ${new Date(st.at).toLocaleString()}`;
    text += `${st.error ? `: ${st.error}` : ""}${at}`;
  } else if (st.state === "restarting" && st.attempt !== undefined) {
    text += ` (attempt ${st.attempt})`;
  }
  const extras = [`restarts ${t.restarts ?? 0}`];
  if (t.critical) extras.push("critical");
  return `${text.padEnd(10)}  ${extras.join(", ")}`;
}

function formatOrigin(o: OriginStatus): string {
  const health = o.healthy
    ? "healthy"
    : `unhealthy (${o.consecutiveFailures} failed probe${o.consecutiveFailures === 1 ? "" : "s"})`;
  const watch = o.watch === "polling" ? "polling for changes" : o.watch ?? "?";
  return `${health}, ${watch}${o.reason ? ` (${o.reason})` : ""}`;
}
