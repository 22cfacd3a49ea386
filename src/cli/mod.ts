/** The command line: commander program, one-line errors and exit codes (SPEC.md section 1). */
import { Command, CommanderError } from "commander";
import {
  defaultCacheDir,
  defaultStateDir,
  mountCommand,
  type MountFlags,
  parseSize,
  UsageError,
} from "./mount.ts";
import { statusCommand, statusOfAll } from "./commands/status.ts";
import { CommandError, consoleIo, reportError } from "./commands/common.ts";
import {
  canonicalMountpoint,
  manyDaemonsError,
  resolveTarget,
  type TargetFlags,
  unservedError,
} from "./commands/target.ts";
import { searchCommand } from "./commands/search.ts";
import { rescanCommand } from "./commands/rescan.ts";
import { unmountCommand } from "./commands/unmount.ts";
import { forceUnmountCommand } from "./commands/force_unmount.ts";

import { checkCommand } from "./commands/check.ts";
import { DemoFs, FuseSession, MountError } from "../fuse/mod.ts";

export {
  defaultCacheDir,
  defaultStateDir,
  type MountFlags,
  parseSize,
  resolveMountOptions,
  UsageError,
} from "./mount.ts";
export type { DaemonOptions } from "../daemon/daemon.ts";

/** The version printed by `musicfs --version`. */
export const VERSION = "0.1.0";

/** One-line reason of a failure, plus what to do when the error does not say. */
function describe(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0];
}

/** Commander's `error: x\n(Did you mean y?)` as one line: `musicfs: x (Did you mean y?)`. */
function oneLine(text: string, hint: string): string {
  const parts = text.replace(/^error: /, "").split("\n").map((l) => l.trim()).filter(Boolean);
  const [first, ...rest] = parts;
  const more = rest.map((r) => r.replace(/^\((.*)\)$/, "$1"));
  return `musicfs: ${first} (${[...more, hint].join("; ")})\n`;
}

/** The options of each command, as the synopsis shows them: `--mountpoint <dir>` -> `DIR`. */
function optionText(flags: string): string {
  const m = /^(--[\w-]+)(?: <([^>]+)>)?$/.exec(flags.replace(/^-\w, /, ""));
  if (!m) return flags;
  if (!m[2]) return m[1];
  const arg = m[2].includes("|") ? m[2] : m[2].replace(/[^\w]/g, "").toUpperCase();
  return `${m[1]} ${arg}`;
}

/**
 * The synopsis, one entry per command with every option it takes, wrapped at 100 columns:
 * what `musicfs --help` ends with and what the README shows (a test keeps them equal).
 */
export function synopsis(
  program: Command = buildProgram({ run: () => Promise.resolve(0) }).program,
): string {
  const lines: string[] = [];
  for (const cmd of program.commands) {
    const head = `musicfs ${cmd.name()}`;
    const words: string[] = cmd.registeredArguments.map((a) =>
      a.required ? `<${a.name()}${a.variadic ? "..." : ""}>` : `[${a.name().toUpperCase()}]`
    );
    for (const o of cmd.options) {
      if (o.long === "--help" || o.hidden) continue;
      words.push(`[${optionText(o.flags)}]`);
    }
    let line = head;
    for (const w of words) {
      if (line.length + 1 + w.length > 100) {
        lines.push(line);
        line = " ".repeat(head.length) + " " + w;
      } else {
        line += " " + w;
      }
    }
    lines.push(line);
  }
  return lines.join("\n");
}

/** What a command action returns: its exit code. */
type Run = (name: string, work: () => Promise<number>) => Promise<number>;

/** The commander program; `run` executes each action (tests pass a no-op). */
function buildProgram(opts: { run: Run }): { program: Command; code: () => number } {
  let code = 0;
  const act = async (name: string, work: () => Promise<number>) => {
    code = await opts.run(name, work);
  };
  const program = new Command("musicfs")
    .description("Mount music folders as a read-only filesystem organized by tags")
    .version(VERSION)
    .exitOverride()
    .configureOutput({
      writeErr: (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
      outputError: (s, write) => write(oneLine(s, "run musicfs --help for usage")),
    });

  program.command("mount")
    .description("mount libraries as a tag-organized tree (in the background unless --foreground)")
    .argument("<library...>", "music folders to serve")
    .option("--mountpoint <dir>", "where to mount (default ~/MusicFS)")
    .option("--foreground", "stay attached, log to stderr (for systemd Type=notify)")
    .option("--wait", "return only once the first scan is done (a progress bar on a terminal)")
    .option("--state-dir <dir>", "library.db, search snapshot, lock, log")
    .option("--cache-dir <dir>", "chunk cache and its index")
    .option("--cache-size <size>", "cache limit, e.g. 500M, 2G, 2GiB (default 2G)")
    .option("--cache-reads <remote|always|never>", "which libraries are cached (default remote)")
    .option(
      "--layout <template>",
      "the /Artists layout, e.g. '{albumartist}/{album} ({year})/{track:02} - {title}'",
    )
    .option("--allow-other", "let other users see the mount, with the sources' permissions")
    .option("--allow-other-search", "with --allow-other: let other users search under /.search")
    .option("--follow-symlinks", "also serve symlinks that point outside the libraries")
    .option("--log-level <level>", "trace | debug | info | warning | error (default info)")
    .option("--log-format <text|json>", "log line format (default text)")
    .option("--demo", "serve a small in-memory demo tree at <library> instead (FUSE layer only)")
    .action((libraries: string[], flags: MountFlags & { demo?: boolean }) =>
      act("mount", () => {
        if (flags.demo) {
          if (libraries.length > 1) {
            throw new UsageError(
              `--demo takes one folder, the mountpoint, not ${libraries.length} ` +
                `(usage: musicfs mount --demo <dir>)`,
            );
          }
          return demoMount(flags.mountpoint ?? libraries[0]);
        }
        return mountCommand(libraries, flags, VERSION);
      })
    );

  const abs = (p: string) => (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`);
  const flagsOf = (o: { stateDir?: string; mountpoint?: string }): TargetFlags => ({
    stateDir: o.stateDir ? abs(o.stateDir) : undefined,
    mountpoint: o.mountpoint ? canonicalMountpoint(o.mountpoint) : undefined,
  });
  const target = (o: { stateDir?: string; mountpoint?: string }) =>
    resolveTarget(flagsOf(o), { defaultStateDir: defaultStateDir() });
  /** One daemon or a one-line error (several running, or none at that mountpoint). */
  const one = async (o: { stateDir?: string; mountpoint?: string }, command: string) => {
    const t = await target(o);
    if (t.kind === "many") throw manyDaemonsError(t.entries, command);
    if (t.kind === "unserved") throw unservedError(t);
    return t;
  };
  const printed = (e: unknown): number => reportError(consoleIo, e, "see the daemon's log");

  program.command("unmount")
    .description("stop the daemon of a mount cleanly (or detach a dead mount)")
    .argument("[dir]", "the mountpoint (like umount DIR)")
    .option("--mountpoint <dir>", "the mount to stop (default: the one running daemon)")
    .option("--state-dir <dir>", "state dir of the daemon")
    .option("--lazy", "detach even while processes use the mount")
    .option(
      "--force",
      "abort the FUSE connection and detach the mount, for a stopped, stuck or dead daemon",
    )
    .action((
      dir: string | undefined,
      o: { mountpoint?: string; stateDir?: string; lazy?: boolean; force?: boolean },
    ) =>
      act("unmount", async () => {
        if (dir && o.mountpoint && canonicalMountpoint(dir) !== canonicalMountpoint(o.mountpoint)) {
          throw new UsageError(`Two mountpoints given: ${dir} and --mountpoint ${o.mountpoint}`);
        }
        if (o.force && o.lazy) throw new UsageError("--force and --lazy exclude each other");
        const t = await target({ ...o, mountpoint: dir ?? o.mountpoint });
        if (t.kind === "many") return printed(manyDaemonsError(t.entries, "unmount"));
        if (o.force) {
          // No request to the daemon: it may be stopped or stuck.
          return await forceUnmountCommand({
            stateDir: t.kind === "unserved" ? t.defaultStateDir : t.stateDir,
            mountpoint: t.mountpoint,
          });
        }
        if (t.kind === "unserved") {
          return await unmountCommand({
            stateDir: t.defaultStateDir,
            mountpoint: t.mountpoint,
            daemonless: true,
            lazy: o.lazy,
          });
        }
        return await unmountCommand({
          stateDir: t.stateDir,
          socketPath: t.socketPath,
          mountpoint: t.mountpoint ?? canonicalMountpoint("~/MusicFS"),
          lazy: o.lazy,
        });
      })
    );

  program.command("status")
    .description(
      "show the daemon's mount, scan, tasks, origins and cache (all daemons: one line each)",
    )
    .option("--json", "print the status document as JSON")
    .option("--mountpoint <dir>", "the mount to report on")
    .option("--state-dir <dir>", "state dir of the daemon")
    .action((o: { json?: boolean; mountpoint?: string; stateDir?: string }) =>
      act("status", async () => {
        const t = await target(o);
        if (t.kind === "many") return await statusOfAll(t.entries, { json: o.json });
        if (t.kind === "unserved") return printed(unservedError(t));
        return await statusCommand({
          stateDir: t.stateDir,
          socketPath: t.socketPath,
          json: o.json,
        });
      })
    );

  program.command("search")
    .description("search the library (asks the daemon, or reads the state dir when none runs)")
    .argument("<query...>", "words to look for")
    .option("--limit <n>", "most results (1-1000, default 20)")
    .option("--json", "print the matches as JSON")
    .option("--mountpoint <dir>", "the mount to search")
    .option("--state-dir <dir>", "state dir of the daemon")
    .action(
      (
        words: string[],
        o: { limit?: string; json?: boolean; stateDir?: string; mountpoint?: string },
      ) =>
        act("search", async () => {
          let limit: number | undefined;
          if (o.limit !== undefined) {
            limit = Number(o.limit);
            if (!Number.isInteger(limit)) {
              throw new UsageError(
                `Invalid --limit: ${o.limit} (use a whole number from 1 to 1000)`,
              );
            }
          }
          const t = await target(o);
          if (t.kind === "many") return printed(manyDaemonsError(t.entries, "search"));
          const stateDir = t.kind === "one" ? t.stateDir : t.defaultStateDir;
          // The daemon records its mountpoint and a custom --layout there, for answers without it.
          const layout = await Deno.readTextFile(`${stateDir}/layout`).catch(() => undefined);
          const lastMount = await Deno.readTextFile(`${stateDir}/mountpoint`).catch(() =>
            undefined
          );
          // No daemon at that mountpoint: the default state dir answers offline, but only for
          // the mount it last served, so no other library's paths are printed under DIR.
          if (
            t.kind === "unserved" &&
            (!lastMount || canonicalMountpoint(lastMount) !== t.mountpoint)
          ) return printed(unservedError(t));
          return await searchCommand({
            stateDir,
            socketPath: t.kind === "one" ? t.socketPath : undefined,
            layout,
            query: words.join(" "),
            limit,
            json: o.json,
            mountpoint: t.mountpoint ?? lastMount,
          });
        }),
    );

  program.command("rescan")
    .description("ask the daemon to rescan its libraries")
    .option("--mountpoint <dir>", "the mount to rescan")
    .option("--state-dir <dir>", "state dir of the daemon")
    .action((o: { mountpoint?: string; stateDir?: string }) =>
      act("rescan", async () => {
        const t = await one(o, "rescan");
        return await rescanCommand({ stateDir: t.stateDir, socketPath: t.socketPath });
      })
    );

  program.command("check")
    .description("verify every store offline (library.db, search snapshot, chunk cache, lock)")
    .option("--state-dir <dir>", "state dir to check")
    .option("--cache-dir <dir>", "cache dir to check")
    .option("--cache-size <size>", "cache limit applied by --repair")
    .option("--repair", "apply the recoveries the daemon would")
    .action(
      (o: { stateDir?: string; cacheDir?: string; cacheSize?: string; repair?: boolean }) =>
        act("check", () =>
          checkCommand({
            stateDir: abs(o.stateDir ?? defaultStateDir()),
            cacheDir: abs(o.cacheDir ?? defaultCacheDir()),
            repair: o.repair,
            cacheSize: o.cacheSize === undefined ? undefined : parseSize(o.cacheSize),
          })),
    );

  program.addHelpText("after", () => `\nSynopsis:\n${synopsis(program)}\n`);
  return { program, code: () => code };
}

/** Run the CLI with `args` (no program name); resolves to the process exit code. */
export async function main(args: string[]): Promise<number> {
  // Every file musicfs writes (state, cache, log, socket) is its user's alone.
  Deno.umask(0o077);
  const debug = args.includes("--log-level=debug") || args.join(" ").includes("--log-level debug");
  const { program, code } = buildProgram({ run: (_name, work) => work() });
  try {
    await program.parseAsync(args, { from: "user" });
    return code();
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof UsageError) {
      console.error(`musicfs: ${e.message}`);
      return 2;
    }
    if (e instanceof CommandError) return reportError(consoleIo, e, "");
    console.error(`musicfs: ${describe(e)}`);
    if (debug && e instanceof Error && e.stack) console.error(e.stack);
    return 1;
  }
}

async function demoMount(mountpoint: string): Promise<number> {
  const fs = new DemoFs();
  fs.addFile("README.txt", "This is the musicfs demo filesystem: the FUSE layer with no music.\n");
  fs.addDir("empty");
  fs.addSymlink("link-to-readme", "README.txt");
  for (let i = 1; i <= 100; i++) fs.addFile(`numbers/${String(i).padStart(3, "0")}.txt`, `${i}\n`);
  let session: FuseSession;
  try {
    session = await FuseSession.mount(mountpoint, fs, { create: true });
  } catch (e) {
    if (e instanceof MountError) throw e;
    throw new Error(`Cannot mount the demo at ${mountpoint}: ${describe(e)}`, { cause: e });
  }
  console.error(`musicfs: demo mounted at ${session.mountpoint} (Ctrl-C to unmount)`);
  const stop = () => void session.unmount();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await session.closed;
  return 0;
}
