/**
 * The real musicfs daemon as a child process, for end-to-end tests: start it in the
 * foreground (resolves once it prints that the mount answers), talk to its control socket,
 * and always stop it: SIGTERM, a bounded wait, then SIGKILL and `umount -l` of a mount left
 * behind, so a failing test never leaks a mount or a process.
 *
 * It mounts, so like every mount test the example runs only where /dev/fuse is (and says
 * so loudly where it is not):
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeLibrary } from "../fixtures/mod.ts";
 * import { daemonDirs, daemonOptions, startDaemon } from "./daemon.ts";
 * import { HAVE_FUSE } from "./helpers.ts";
 *
 * if (HAVE_FUSE) {
 *   const dirs = await daemonDirs(); // library, mountpoint, state and cache in one temp dir
 *   try {
 *     const lib = await makeLibrary(dirs.lib, { tracks: 3, seed: 7 });
 *     const d = await startDaemon(daemonOptions(dirs));
 *     try {
 *       const status = await d.waitScanDone();
 *       assert.equal(status.tracks, lib.good.length);
 *       // Read the mount with async APIs only: a sync call would block the test's event loop.
 *       const artists = await Array.fromAsync(Deno.readDir(`${dirs.mnt}/Artists`));
 *       assert.ok(artists.length > 0);
 *     } finally {
 *       await d.stop(); // SIGTERM, then SIGKILL and `umount -l` if need be
 *     }
 *   } finally {
 *     await dirs.cleanup();
 *   }
 * }
 * ```
 *
 * @module
 */
import { controlRequest, controlSocketPath, type TaskReportJson } from "../../src/daemon/mod.ts";
import type { DaemonStatus } from "../../src/daemon/daemon.ts";
import { isMounted, run, tempDir, waitFor } from "./helpers.ts";

export type { DaemonStatus };

/** `main.ts` of this checkout. */
export const MAIN_TS: string = new URL("../../main.ts", import.meta.url).pathname;
/** `deno.json` of this checkout (import map for commander and friends). */
export const DENO_JSON: string = new URL("../../deno.json", import.meta.url).pathname;

/** The argv prefix that runs the `musicfs` CLI of this checkout. */
export function musicfsArgv(): string[] {
  return [Deno.execPath(), "run", "-A", "--quiet", `--config=${DENO_JSON}`, MAIN_TS];
}

/** Run `musicfs <args>` to completion (bounded: killed after `timeoutMs`). */
export async function musicfs(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [exe, ...pre] = musicfsArgv();
  const child = new Deno.Command(exe, {
    args: [...pre, ...args],
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 60_000);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** A scratch layout for one daemon: library, mountpoint, state and cache dirs in one temp dir. */
export interface DaemonDirs {
  root: string;
  /** Library root (created, empty). */
  lib: string;
  /** Mountpoint (created, empty). */
  mnt: string;
  /** State dir (not created: the daemon makes it). */
  state: string;
  /** Cache dir (not created). */
  cache: string;
  /** Detach anything still mounted below `root`, then remove it. */
  cleanup(): Promise<void>;
}

/** Make a {@link DaemonDirs}. */
export async function daemonDirs(prefix = "musicfs-e2e-"): Promise<DaemonDirs> {
  const dir = await tempDir(prefix);
  const d = {
    root: dir.path,
    lib: `${dir.path}/lib`,
    mnt: `${dir.path}/mnt`,
    state: `${dir.path}/state`,
    cache: `${dir.path}/cache`,
    cleanup: () => dir.cleanup(),
  };
  await Deno.mkdir(d.lib);
  await Deno.mkdir(d.mnt);
  return d;
}

/** Options of {@link startDaemon}. */
export interface StartOptions {
  libraries: string[];
  mountpoint: string;
  stateDir: string;
  cacheDir: string;
  /** More `musicfs mount` arguments, e.g. `["--layout", "..."]`. */
  args?: string[];
  /** Extra environment for the child (added to ours). */
  env?: Record<string, string>;
  /** How long the mount may take to answer; default 60 s. */
  readyTimeoutMs?: number;
  /** A command that execs the daemon, e.g. `["prlimit", "--nofile=64:64", "--"]`. */
  wrap?: string[];
}

/** Thrown by {@link startDaemon} when the daemon exits or hangs before serving. */
export class DaemonStartFailed extends Error {
  constructor(message: string, readonly code: number | null, readonly stderr: string) {
    super(message);
    this.name = "DaemonStartFailed";
  }
}

const READY_LINE = /musicfs: serving (.+) \((\d+) tracks;/;

/** A running foreground daemon (see {@link startDaemon}). */
export class DaemonProcess {
  readonly #proc: Deno.ChildProcess;
  #stderr = "";
  #status: Deno.CommandStatus | undefined;
  /** Resolves when the process has exited (and its stderr is fully read). */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Track count printed in the `serving` line. */
  tracksAtReady = -1;

  constructor(proc: Deno.ChildProcess, readonly opts: StartOptions) {
    this.#proc = proc;
    const reading = (async () => {
      const dec = new TextDecoder();
      try {
        for await (const chunk of proc.stderr) this.#stderr += dec.decode(chunk, { stream: true });
      } catch { /* the pipe broke: the process is gone */ }
    })();
    this.exited = proc.status.then(async (s) => {
      await reading;
      this.#status = s;
      return s;
    });
  }

  /** The child's pid. */
  get pid(): number {
    return this.#proc.pid;
  }

  /** Everything the daemon wrote to stderr so far (its log, in the foreground). */
  get stderr(): string {
    return this.#stderr;
  }

  /** The exit status once it has exited. */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** Where its control socket is. */
  get socket(): string {
    return controlSocketPath(this.opts.stateDir);
  }

  /** Send a signal (ignored when it has already exited). */
  kill(signal: Deno.Signal): void {
    if (this.#status) return;
    try {
      this.#proc.kill(signal);
    } catch { /* exited meanwhile */ }
  }

  /** One control API request. */
  control(method: string, path: string, timeoutMs = 5000): Promise<unknown> {
    return controlRequest(this.socket, method, path, { timeoutMs });
  }

  /** GET /status. */
  async getStatus(timeoutMs = 5000): Promise<DaemonStatus> {
    return await this.control("GET", "/status", timeoutMs) as DaemonStatus;
  }

  /** Wait until the scan started at mount time has finished. */
  async waitScanDone(timeoutMs = 60_000): Promise<DaemonStatus> {
    let last: DaemonStatus | undefined;
    await waitFor(
      async () => {
        if (this.#status) throw new Error(`daemon exited during the scan:\n${this.#stderr}`);
        last = await this.getStatus().catch(() => undefined);
        const tasks = (last?.tasks ?? []) as TaskReportJson[];
        return last?.scan?.phase === "done" &&
          !tasks.some((t) => t.name === "scanner" && t.state === "running");
      },
      timeoutMs,
      "the scan to finish",
    );
    return last!;
  }

  /** Wait (bounded) for the process to exit; throws on timeout. */
  async waitExit(timeoutMs = 20_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((
      r,
    ) => (timer = setTimeout(() => r(undefined), timeoutMs)));
    try {
      const s = await Promise.race([this.exited, timeout]);
      if (!s) throw new Error(`daemon ${this.pid} did not exit within ${timeoutMs} ms`);
      return s;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Stop it for good, whatever state it is in: SIGTERM, wait up to `graceMs`, then SIGKILL;
   * finally detach a mount left at the mountpoint. Resolves with the exit status (that of the
   * SIGTERM when it was enough). Never throws.
   */
  async stop(graceMs = 15_000): Promise<Deno.CommandStatus | undefined> {
    let status = this.#status;
    if (!status) {
      this.kill("SIGTERM");
      status = await this.waitExit(graceMs).catch(() => undefined);
    }
    if (!status) {
      console.error(
        `*** daemon ${this.pid} ignored SIGTERM; killing it. Its log:\n${this.#stderr}`,
      );
      this.kill("SIGKILL");
      status = await this.waitExit(10_000).catch(() => undefined);
    }
    await detachIfMounted(this.opts.mountpoint);
    return status;
  }
}

/** `umount -l` the mountpoint when something is still mounted there. */
export async function detachIfMounted(mountpoint: string): Promise<void> {
  if (await isMounted(mountpoint)) {
    const r = await run(["umount", "-l", mountpoint]);
    if (r.code !== 0) console.error(`*** umount -l ${mountpoint} failed: ${r.stderr.trim()}`);
  }
}

/**
 * Start `musicfs mount --foreground` as a child and resolve once it prints that the mount
 * answers. If it exits first or does not get there in time, it is stopped and
 * {@link DaemonStartFailed} is thrown with its stderr.
 */
export async function startDaemon(opts: StartOptions): Promise<DaemonProcess> {
  const [exe, ...pre] = [...(opts.wrap ?? []), ...musicfsArgv()];
  const proc = new Deno.Command(exe, {
    args: [
      ...pre,
      "mount",
      ...opts.libraries,
      "--mountpoint",
      opts.mountpoint,
      "--state-dir",
      opts.stateDir,
      "--cache-dir",
      opts.cacheDir,
      "--foreground",
      ...(opts.args ?? []),
    ],
    env: opts.env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const d = new DaemonProcess(proc, opts);
  try {
    await waitFor(
      () => d.exitStatus !== undefined || READY_LINE.test(d.stderr),
      opts.readyTimeoutMs ?? 60_000,
      "the daemon to serve its mount",
    );
  } catch (e) {
    await d.stop(2000);
    throw new DaemonStartFailed(`${(e as Error).message}:\n${d.stderr}`, null, d.stderr);
  }
  if (d.exitStatus) {
    await detachIfMounted(opts.mountpoint);
    throw new DaemonStartFailed(
      `the daemon exited with code ${d.exitStatus.code} before serving:\n${d.stderr}`,
      d.exitStatus.code,
      d.stderr,
    );
  }
  d.tracksAtReady = Number(READY_LINE.exec(d.stderr)![2]);
  return d;
}

/** Start a daemon, run `fn`, and stop the daemon whatever happens. */
export async function withDaemon<T>(
  opts: StartOptions,
  fn: (d: DaemonProcess) => Promise<T>,
): Promise<T> {
  const d = await startDaemon(opts);
  try {
    return await fn(d);
  } finally {
    await d.stop();
  }
}

/** Whether process `pid` exists and is not a zombie (from /proc). */
export async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Start options for a daemon on `dirs`, plus extra CLI arguments or environment. */
export function daemonOptions(
  dirs: DaemonDirs,
  extra: { args?: string[]; env?: Record<string, string> } = {},
): StartOptions {
  return {
    libraries: [dirs.lib],
    mountpoint: dirs.mnt,
    stateDir: dirs.state,
    cacheDir: dirs.cache,
    ...extra,
  };
}

/** Whether `path` exists (without following a final symlink): the project's one `exists`. */
export { exists } from "../../src/util/mod.ts";

/** Make {@link DaemonDirs}, run `fn`, then detach any mount left and remove them. */
export async function withDirs<T>(fn: (dirs: DaemonDirs) => Promise<T>): Promise<T> {
  const dirs = await daemonDirs();
  try {
    return await fn(dirs);
  } finally {
    await detachIfMounted(dirs.mnt);
    await dirs.cleanup();
  }
}
