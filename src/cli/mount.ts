/**
 * `musicfs mount`: checks every argument before anything is touched, then runs the daemon in
 * the foreground, or starts it in the background and waits until its mount answers.
 */
import { parseLayout } from "../fs/mod.ts";
import { parseLevel, setupLogging } from "../log/mod.ts";
import { controlRequest, controlSocketPath, rotateLogFile } from "../daemon/mod.ts";
import { type DaemonOptions, runDaemon } from "../daemon/daemon.ts";

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
  /** `--allow-other`: let other users see the mount. */
  allowOther?: boolean;
  /** `--follow-symlinks`: serve symlinks whose target lies outside every library root. */
  followSymlinks?: boolean;
  /** `--log-level` as typed (`warn` is accepted for `warning`); default `info`. */
  logLevel?: string;
  /** `--log-format`, unchecked: should be `text` or `json` (default `text`). */
  logFormat?: string;
}

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

/** Parse `500M`, `2G`, `2GiB`, `1.5T`, `1048576` into bytes; throws {@link UsageError}. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`Invalid size: ${text} (use e.g. 500M, 2G or 2GiB)`);
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase()]!;
  const n = Math.floor(Number(m[1]) * mult);
  if (n <= 0) throw new UsageError(`Invalid size: ${text} (must be more than 0)`);
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
    const real = Deno.realPathSync(abs);
    if (!roots.includes(real)) roots.push(real);
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
  if (flags.logLevel) {
    try {
      parseLevel(flags.logLevel);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  if (flags.logFormat && !["text", "json"].includes(flags.logFormat)) {
    throw new UsageError(`Invalid --log-format: ${flags.logFormat} (use text or json)`);
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
    await Deno.mkdir(opts.stateDir, { recursive: true });
    const file = `${opts.stateDir}/musicfs.log`;
    await rotateLogFile(file);
    setupLogging({ level, format, file });
  } else {
    setupLogging({ level, format });
  }
  return await runDaemon({
    ...opts,
    onReady: ({ mountpoint, tracks }) => {
      if (!child) {
        console.error(`musicfs: serving ${mountpoint} (${tracks} tracks; Ctrl-C to stop)`);
      }
    },
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
      const st = await controlRequest(sock, "GET", "/status", { timeoutMs: 1000 }) as {
        pid: number;
        mountpoint: string;
        tracks: number;
      };
      if (st.pid === proc.pid) {
        console.log(`musicfs: mounted ${st.mountpoint} (${st.tracks} tracks, pid ${st.pid})`);
        proc.unref();
        await proc.stderr.cancel().catch(() => {});
        return 0;
      }
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error("musicfs: the daemon did not answer within 120 s (see the log in the state dir)");
  return 1;
}
