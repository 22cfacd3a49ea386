/**
 * `musicfs mount`: checks every argument before anything is touched, then runs the daemon in
 * the foreground, or starts it in the background and waits until its mount answers.
 */
import { parseLayout } from "../fs/mod.ts";
import { parseLevel, setupLogging } from "../log/mod.ts";
import { controlRequest, controlSocketPath, rotateLogFile } from "../daemon/mod.ts";
import { type DaemonOptions, type DaemonStatus, runDaemon } from "../daemon/daemon.ts";
import { ProgressBar } from "./progress.ts";
import { detach, findFuseMount, mountinfoPath, probeMount } from "../fuse/mod.ts";

const num = (n: number) => n.toLocaleString("en-US");

/** `61 tracks, 1 unreadable file (see <mnt>/.musicfs/problems.txt)`. */
export function describeLibrary(
  st: Pick<DaemonStatus, "tracks" | "problems" | "mountpoint">,
): string {
  const tracks = `${num(st.tracks)} track${st.tracks === 1 ? "" : "s"}`;
  if (!st.problems) return tracks;
  return `${tracks}, ${num(st.problems)} unreadable file${st.problems === 1 ? "" : "s"} ` +
    `(see ${st.mountpoint}/.musicfs/problems.txt)`;
}

/** What the background mount says once it answers: what it serves and what happens next. */
export function nextSteps(st: DaemonStatus, libraries: string[]): string {
  const scan = st.scan;
  if (st.firstScanDone || (scan && !scan.active && scan.phase === "done")) {
    return `${describeLibrary(st)}; the libraries are watched for changes`;
  }
  const what = scan?.walkDone
    ? `${num(scan.seen)} files`
    : libraries.length === 1
    ? libraries[0]
    : `${libraries.length} libraries`;
  const sofar = st.tracks ? ` (${num(st.tracks)} tracks so far)` : "";
  return `scanning ${what} in the background${sofar}; musicfs status shows progress`;
}

/**
 * Polls the daemon until its first scan is done, drawing the bar on a terminal. Null when the
 * daemon went away meanwhile.
 */
async function waitFirstScan(sock: string, gone: () => boolean): Promise<DaemonStatus | null> {
  const bar = new ProgressBar();
  try {
    for (;;) {
      if (gone()) return null;
      let st: DaemonStatus | undefined;
      try {
        st = await controlRequest(sock, "GET", "/status", { timeoutMs: 5000 }) as DaemonStatus;
      } catch {
        if (gone()) return null;
      }
      if (st?.firstScanDone) return st;
      if (st) bar.update(st);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    bar.clear();
  }
}

/** A bad argument: exit code 2 with a one-line message. */
export class UsageError extends Error {
  /** `message` is shown after `musicfs: `. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** Raw options of `musicfs mount` as commander parses them. */
export interface MountFlags {
  /** `--mountpoint`; relative or `~/` paths allowed. Default `~/MusicFS`. */
  mountpoint?: string;
  /** `--foreground`: run the daemon in this process instead of a background child. */
  foreground?: boolean;
  /** `--state-dir`; default {@link defaultStateDir}. */
  stateDir?: string;
  /** `--cache-dir`; default {@link defaultCacheDir}. */
  cacheDir?: string;
  /** `--cache-size` as typed, e.g. `2G`; parsed by {@link parseSize}. Default `2G`. */
  cacheSize?: string;
  /** `--cache-reads`, unchecked: should be `remote`, `always` or `never` (default `remote`). */
  cacheReads?: string;
  /** `--layout` template of /Artists, unchecked; default the built-in layout. */
  layout?: string;
  /** `--allow-other`: let other users see the mount (with the sources' permissions). */
  allowOther?: boolean;
  /** `--follow-symlinks`: serve symlinks whose target lies outside every library root. */
  followSymlinks?: boolean;
  /** `--allow-other-search`: let other users run queries under /.search too. */
  allowOtherSearch?: boolean;
  /** `--log-level` as typed (`warn` is accepted for `warning`); default `info`. */
  logLevel?: string;
  /** `--log-format`, unchecked: should be `text` or `json` (default `text`). */
  logFormat?: string;
  /** `--wait`: return only once the first scan is done. */
  wait?: boolean;
}

/** The levels `--log-level` takes (`warn` is accepted for `warning`). */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error"] as const;

const home = () => Deno.env.get("HOME") ?? "/root";

/** The state dir: `$XDG_STATE_HOME/musicfs`, else `~/.local/state/musicfs`. */
export function defaultStateDir(): string {
  const x = Deno.env.get("XDG_STATE_HOME");
  return x ? `${x}/musicfs` : `${home()}/.local/state/musicfs`;
}

/** The cache dir: `$XDG_CACHE_HOME/musicfs`, else `~/.cache/musicfs`. */
export function defaultCacheDir(): string {
  const x = Deno.env.get("XDG_CACHE_HOME");
  return x ? `${x}/musicfs` : `${home()}/.cache/musicfs`;
}

/** The largest size taken: 1024 TiB, well inside exact integers. */
const MAX_SIZE = 2 ** 50;

/** Parse `500M`, `2G`, `2GiB`, `1.5T`, `1048576` into bytes; throws {@link UsageError}. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`Invalid size: ${text} (use e.g. 500M, 2G or 2GiB)`);
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase()]!;
  const n = Math.floor(Number(m[1]) * mult);
  if (n <= 0) throw new UsageError(`Invalid size: ${text} (must be more than 0)`);
  if (n > MAX_SIZE) throw new UsageError(`Invalid size: ${text} (at most 1024T)`);
  return n;
}

function absolute(p: string): string {
  if (p.startsWith("~/")) p = `${home()}/${p.slice(2)}`;
  return p.startsWith("/") ? p : `${Deno.cwd()}/${p}`;
}

/** Check everything `musicfs mount` was given; nothing is created or changed here. */
export function resolveMountOptions(
  libraries: string[],
  flags: MountFlags,
  version: string,
): DaemonOptions {
  if (libraries.length === 0) {
    throw new UsageError("No library given (usage: musicfs mount <library>...)");
  }
  const roots: string[] = [];
  for (const lib of libraries) {
    const abs = absolute(lib);
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(abs);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new UsageError(`Library ${lib} does not exist (check the path)`);
      }
      throw new UsageError(`Cannot read library ${lib}: ${(e as Error).message}`);
    }
    if (!info.isDirectory) {
      throw new UsageError(
        `Library ${lib} is not a directory (give the folder that holds your music)`,
      );
    }
    roots.push(Deno.realPathSync(abs));
  }
  const cacheReads = flags.cacheReads ?? "remote";
  if (!["remote", "always", "never"].includes(cacheReads)) {
    throw new UsageError(`Invalid --cache-reads: ${cacheReads} (use remote, always or never)`);
  }
  if (flags.layout !== undefined) {
    try {
      parseLayout(flags.layout);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  if (flags.logLevel !== undefined) {
    const level = flags.logLevel.toLowerCase();
    if (!(LOG_LEVELS as readonly string[]).includes(level) && level !== "warn") {
      throw new UsageError(
        `Invalid --log-level: ${flags.logLevel} (use ${LOG_LEVELS.join(", ")})`,
      );
    }
  }
  if (flags.logFormat && !["text", "json"].includes(flags.logFormat)) {
    throw new UsageError(`Invalid --log-format: ${flags.logFormat} (use text or json)`);
  }
  if (flags.allowOtherSearch && !flags.allowOther) {
    throw new UsageError("--allow-other-search needs --allow-other (add it)");
  }
  const mountpoint = absolute(flags.mountpoint ?? "~/MusicFS");
  for (const r of roots) {
    if (mountpoint === r || mountpoint.startsWith(r + "/")) {
      throw new UsageError(
        `Mountpoint ${mountpoint} is inside library ${r} (choose a folder outside it)`,
      );
    }
    if (r.startsWith(mountpoint + "/")) {
      throw new UsageError(
        `Library ${r} is inside the mountpoint ${mountpoint} (choose a mountpoint outside it)`,
      );
    }
  }
  return {
    libraries: roots,
    mountpoint,
    stateDir: absolute(flags.stateDir ?? defaultStateDir()),
    cacheDir: absolute(flags.cacheDir ?? defaultCacheDir()),
    cacheSize: parseSize(flags.cacheSize ?? "2G"),
    cacheReads: cacheReads as DaemonOptions["cacheReads"],
    layout: flags.layout,
    allowOther: flags.allowOther ?? false,
    followSymlinks: flags.followSymlinks ?? false,
    allowOtherSearch: flags.allowOtherSearch ?? false,
    version,
  };
}

const BACKGROUND_ENV = "MUSICFS_BACKGROUND_CHILD";

/** Run `musicfs mount` with checked options; resolves to the exit code. */
export async function mountCommand(
  libraries: string[],
  flags: MountFlags,
  version: string,
): Promise<number> {
  const opts = resolveMountOptions(libraries, flags, version);
  const level = parseLevel(flags.logLevel ?? "info");
  const format = (flags.logFormat ?? "text") as "text" | "json";
  const child = Deno.env.get(BACKGROUND_ENV) === "1";
  if (!flags.foreground && !child) return await startInBackground(libraries, flags, opts);
  if (child) {
    await Deno.mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    const file = `${opts.stateDir}/musicfs.log`;
    await rotateLogFile(file);
    setupLogging({ level, format, file });
  } else {
    setupLogging({ level, format });
  }
  const bar = new ProgressBar(!child && Deno.stderr.isTerminal());
  return await runDaemon({
    ...opts,
    onReady: ({ mountpoint, tracks }) => {
      if (!child) {
        console.error(
          `musicfs: serving ${mountpoint} (${tracks} tracks; Ctrl-C to stop); ` +
            "scanning the libraries in the background",
        );
      }
    },
    onScanProgress: bar.enabled
      ? (st) => {
        if (st.scan?.active) bar.update(st);
        else {
          bar.clear();
          console.error(`musicfs: scan done: ${describeLibrary(st)}`);
        }
      }
      : undefined,
  });
}

async function startInBackground(
  libraries: string[],
  flags: MountFlags,
  opts: DaemonOptions,
): Promise<number> {
  const exe = Deno.execPath();
  const compiled = !/\/deno$/.test(exe);
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const args = compiled ? [] : ["run", "-A", "--quiet", main];
  args.push(
    "mount",
    ...libraries.map(absolute),
    "--mountpoint",
    opts.mountpoint,
    "--state-dir",
    opts.stateDir,
  );
  args.push(
    "--cache-dir",
    opts.cacheDir,
    "--cache-size",
    String(opts.cacheSize),
    "--cache-reads",
    opts.cacheReads,
  );
  if (flags.layout !== undefined) args.push("--layout", flags.layout);
  if (flags.allowOther) args.push("--allow-other");
  if (flags.followSymlinks) args.push("--follow-symlinks");
  if (flags.allowOtherSearch) args.push("--allow-other-search");
  if (flags.logLevel) args.push("--log-level", flags.logLevel);
  if (flags.logFormat) args.push("--log-format", flags.logFormat);
  const proc = new Deno.Command(exe, {
    args,
    env: { [BACKGROUND_ENV]: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    detached: true,
  }).spawn();
  let errText = "";
  const reading = (async () => {
    const dec = new TextDecoder();
    for await (const c of proc.stderr) errText += dec.decode(c, { stream: true });
  })();
  let exited: Deno.CommandStatus | undefined;
  proc.status.then((s) => (exited = s));
  const sock = controlSocketPath(opts.stateDir);
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (exited) {
      await reading.catch(() => {});
      const line = errText.trim().split("\n").filter(Boolean).at(-1) ??
        `the daemon exited with code ${exited.code}`;
      console.error(line.startsWith("musicfs:") ? line : `musicfs: ${line}`);
      return 1;
    }
    try {
      const st = await controlRequest(sock, "GET", "/status", { timeoutMs: 1000 }) as DaemonStatus;
      if (st.pid === proc.pid) {
        const done = flags.wait ? await waitFirstScan(sock, () => exited !== undefined) : st;
        if (!done) {
          await reading.catch(() => {});
          const line = errText.trim().split("\n").filter(Boolean).at(-1) ??
            "the daemon exited during its first scan";
          console.error(line.startsWith("musicfs:") ? line : `musicfs: ${line}`);
          return 1;
        }
        console.log(`musicfs: mounted ${done.mountpoint} (pid ${done.pid})`);
        console.log(`musicfs: ${nextSteps(done, libraries)}`);
        proc.unref();
        await proc.stderr.cancel().catch(() => {});
        return 0;
      }
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  // A daemon that never answers is of no use and may hold the mount: it must not outlive the
  // failed command.
  await stopChild(proc, () => exited !== undefined);
  await detachDeadMount(opts.mountpoint);
  console.error(
    `musicfs: the daemon did not answer within 120 s and was stopped (see ${opts.stateDir}/musicfs.log)`,
  );
  return 1;
}

/** SIGTERM, up to 10 s for the ordered shutdown, then SIGKILL. */
async function stopChild(proc: Deno.ChildProcess, gone: () => boolean): Promise<void> {
  const signal = (s: Deno.Signal) => {
    try {
      proc.kill(s);
    } catch { /* already gone */ }
  };
  signal("SIGTERM");
  for (let i = 0; i < 100 && !gone(); i++) await new Promise((r) => setTimeout(r, 100));
  if (!gone()) signal("SIGKILL");
  await proc.status.catch(() => {});
}

/** Detach the mount a killed daemon left at `mountpoint` (only a dead musicfs one). */
async function detachDeadMount(mountpoint: string): Promise<void> {
  const mount = findFuseMount(mountinfoPath(mountpoint));
  if (mount?.fstype !== "fuse.musicfs") return;
  if ((await probeMount(mount.mountpoint)) !== "live") {
    await detach(mount.mountpoint).catch(() => false);
  }
}
