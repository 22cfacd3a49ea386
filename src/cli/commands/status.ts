/**
 * `musicfs status [--json]`: what the running daemon reports on GET /status.
 *
 * @module
 */
import {
  DaemonNotRunningError,
  type DaemonStatus,
  type OriginStatus,
  type RegistryEntry,
  type ScanStatus,
  type TaskStatusJson,
} from "../../daemon/mod.ts";
import { quickStatus } from "./target.ts";
import { formatBytes } from "../../cas/mod.ts";
import { escapeControl } from "../../fs/mod.ts";
import {
  askDaemon,
  type CommandIo,
  consoleIo,
  type DaemonOptions,
  formatDuration,
  notRunningError,
  reportError,
} from "./common.ts";

export type { DaemonStatus, OriginStatus, ScanStatus, TaskStatusJson };

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
 * With several daemons running: one line each (mountpoint, pid, tracks, scan), then how to
 * pick one. With `json`, an array of their status documents. Exit code 0.
 */
export async function statusOfAll(
  entries: RegistryEntry[],
  opts: { json?: boolean; io?: CommandIo } = {},
): Promise<number> {
  const io = opts.io ?? consoleIo;
  const all = await Promise.all(entries.map((e) => quickStatus(e.socket)));
  if (opts.json) {
    io.out(JSON.stringify(all.map((st, i) => st ?? { ...entries[i], answering: false }), null, 2));
    return 0;
  }
  const width = Math.max(...entries.map((e) => e.mountpoint.length));
  entries.forEach((e, i) => {
    const st = all[i];
    const what = st
      ? `pid ${st.pid}, ${num(st.tracks)} tracks${
        st.problems ? `, ${num(st.problems)} unreadable` : ""
      }, scan ${st.scan ? formatScan(st.scan) : "idle"}`
      : `pid ${e.pid}, not answering`;
    io.out(`${e.mountpoint.padEnd(width)}  ${what}`);
  });
  io.out(`${entries.length} daemons running; for one in detail: musicfs status --mountpoint DIR`);
  return 0;
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
  if (s.stateDir) row("state dir", s.stateDir);
  row("tracks", formatTracks(s));
  row("scan", s.scan ? formatScan(s.scan) : "idle");
  if (s.readOnly) {
    row("", `library.db read-only: ${escapeControl(s.readOnly)}`);
  }
  if (s.scanRetry) {
    const next = s.scanRetry.nextAt
      ? `, next try ${new Date(s.scanRetry.nextAt).toLocaleString()}`
      : "";
    row(
      "",
      `serving the stored tree: ${s.scanRetry.failures} scan(s) failed (${
        escapeControl(s.scanRetry.reason ?? "?")
      })${next}`,
    );
  }
  if (s.integrity) {
    const i = s.integrity;
    const src = i.sources
      ? `; ${i.sources.checked} sources checked, ${i.sources.missing} missing`
      : "";
    row(
      "library.db",
      i.ok
        ? `sound (checked in ${i.ms} ms${src})`
        : `was damaged, rebuilt: ${escapeControl(i.reason ?? "?")}`,
    );
  }
  if (s.fds?.refused) {
    row(
      "files",
      `${s.fds.refused} opens refused for lack of file descriptors (limit ${s.fds.limit}, ` +
        `${s.fds.sourcesOpen} open now)`,
    );
  }
  if (s.search) {
    const docs = `${
      typeof s.search.documents === "number" ? num(s.search.documents) : "?"
    } documents`;
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
    for (const t of tasks) {
      lines.push(`  ${String(t.name).padEnd(width)}  ${formatTask(t as AnyTask)}`);
    }
  }
  const origins = s.origins ?? [];
  if (origins.length) {
    lines.push("origins");
    const width = Math.max(...origins.map((o) => String(o.path).length));
    for (const o of origins) lines.push(`  ${String(o.path).padEnd(width)}  ${formatOrigin(o)}`);
  }
  // Paths and reasons come from the sources: no name may forge a line or drive the terminal.
  return lines.map(escapeControl);
}

const num = (n: number) => n.toLocaleString("en-US");

/**
 * The scan line. Counts files of one kind only, so they cannot contradict the track count:
 * "read" covers tracks and unreadable files alike, and no percentage is left short by files
 * that failed.
 */
export function formatScan(scan: ScanStatus): string {
  const active = scan.active ?? scan.phase !== "done";
  const unchanged = scan.unchanged ? `, ${num(scan.unchanged)} unchanged` : "";
  if (!active) {
    const read = scan.total ? `${num(scan.total)} new or changed files read` : "nothing new";
    return `done: ${num(scan.seen)} files${unchanged}, ${read}`;
  }
  const walkDone = scan.walkDone ?? scan.phase !== "walking";
  if (!walkDone) {
    return `walking: ${num(scan.seen)} files found so far${unchanged}, ${num(scan.parsed)} read`;
  }
  const pct = scan.total ? Math.floor((scan.parsed / scan.total) * 100) : 100;
  return `${scan.phase}: ${num(scan.parsed)} of ${num(scan.total)} new or changed files read ` +
    `(${pct}%)${unchanged}`;
}

/** The tracks line: tracks served, and unreadable files as problems (not a missing percent). */
export function formatTracks(s: Partial<DaemonStatus>): string {
  const tracks = typeof s.tracks === "number" ? num(s.tracks) : "?";
  if (!s.problems) return tracks;
  const where = s.mountpoint ? `${s.mountpoint}/.musicfs/problems.txt` : ".musicfs/problems.txt";
  const k = s.problemKinds;
  if (k) {
    const parts = [
      [k.files, "unreadable file"],
      [k.folders, "folder that cannot be entered", "folders that cannot be entered"],
      [k.symlinks, "symlink not followed", "symlinks not followed"],
      [k.hiddenFolders, "hidden folder skipped", "hidden folders skipped"],
    ].filter(([n]) => (n as number) > 0).map(([n, one, many]) =>
      `${num(n as number)} ${n === 1 ? one : many ?? `${one}s`}`
    );
    if (parts.length > 0) return `${tracks} (${parts.join(", ")}: see ${where})`;
  }
  return `${tracks} (${num(s.problems)} unreadable file${
    s.problems === 1 ? "" : "s"
  }: see ${where})`;
}

/** A task report; older daemons nested the state under `status`. */
type AnyTask = Partial<TaskStatusJson> & {
  status?: { state: string; error?: string; at?: number | string; attempt?: number };
};

function formatTask(t: AnyTask): string {
  const st = t.status ?? { ...t, state: t.state ?? "?" };
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
