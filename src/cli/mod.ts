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
import { statusCommand } from "./commands/status.ts";
import { searchCommand } from "./commands/search.ts";
import { rescanCommand } from "./commands/rescan.ts";
import { unmountCommand } from "./commands/unmount.ts";
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

/** Run the CLI with `args` (no program name); resolves to the process exit code. */
export async function main(args: string[]): Promise<number> {
  let code = 0;
  const debug = args.includes("--log-level=debug") || args.join(" ").includes("--log-level debug");
  const program = new Command("musicfs")
    .description("Mount music folders as a read-only filesystem organized by tags")
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError("(run musicfs --help for usage)")
    .configureOutput({
      writeErr: (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
      outputError: (s, write) => write(s.startsWith("error: ") ? `musicfs: ${s.slice(7)}` : s),
    });

  program.command("mount")
    .description("mount libraries as a tag-organized tree (in the background unless --foreground)")
    .argument("<library...>", "music folders to serve")
    .option("--mountpoint <dir>", "where to mount (default ~/MusicFS)")
    .option("--foreground", "stay attached, log to stderr (for systemd Type=notify)")
    .option("--state-dir <dir>", "library.db, search snapshot, lock, log")
    .option("--cache-dir <dir>", "chunk cache and its index")
    .option("--cache-size <size>", "cache limit, e.g. 500M, 2G, 2GiB (default 2G)")
    .option("--cache-reads <mode>", "remote | always | never (default remote)")
    .option(
      "--layout <template>",
      "the /Artists layout, e.g. '{albumartist}/{album} ({year})/{track:02} - {title}'",
    )
    .option("--allow-other", "let other users see the mount")
    .option("--follow-symlinks", "also serve symlinks that point outside the libraries")
    .option("--log-level <level>", "trace | debug | info | warning | error (default info)")
    .option("--log-format <format>", "text | json (default text)")
    .option("--demo", "serve a small in-memory demo tree instead (tests the FUSE layer)")
    .action(async (libraries: string[], flags: MountFlags & { demo?: boolean }) => {
      code = flags.demo
        ? await demoMount(flags.mountpoint ?? libraries[0])
        : await mountCommand(libraries, flags, VERSION);
    });

  const abs = (p: string) => (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`);
  const stateDirOf = (o: { stateDir?: string }) => abs(o.stateDir ?? defaultStateDir());
  const home = Deno.env.get("HOME") ?? "/root";

  program.command("unmount")
    .description("stop the running daemon cleanly (or detach a dead mount)")
    .option("--mountpoint <dir>", "the mount to stop (default ~/MusicFS)")
    .option("--state-dir <dir>", "state dir of the daemon")
    .action(async (o: { mountpoint?: string; stateDir?: string }) => {
      code = await unmountCommand({
        stateDir: stateDirOf(o),
        mountpoint: abs(o.mountpoint ?? `${home}/MusicFS`),
      });
    });

  program.command("status")
    .description("show the running daemon's mount, tasks, origins, scan and cache")
    .option("--json", "print the status document as JSON")
    .option("--state-dir <dir>", "state dir of the daemon")
    .action(async (o: { json?: boolean; stateDir?: string }) => {
      code = await statusCommand({ stateDir: stateDirOf(o), json: o.json });
    });

  program.command("search")
    .description("search the library (asks the daemon, or reads the state dir when none runs)")
    .argument("<query...>", "words to look for")
    .option("--limit <n>", "most results (1-1000, default 20)")
    .option("--json", "print the matches as JSON")
    .option("--state-dir <dir>", "state dir of the daemon")
    .option("--mountpoint <dir>", "prefix paths with this mountpoint when no daemon runs")
    .action(
      async (
        words: string[],
        o: { limit?: string; json?: boolean; stateDir?: string; mountpoint?: string },
      ) => {
        let limit: number | undefined;
        if (o.limit !== undefined) {
          limit = Number(o.limit);
          if (!Number.isInteger(limit)) {
            throw new UsageError(`Invalid --limit: ${o.limit} (use a whole number from 1 to 1000)`);
          }
        }
        const stateDir = stateDirOf(o);
        // The daemon records its mountpoint and a custom --layout there, for answers without it.
        const layout = await Deno.readTextFile(`${stateDir}/layout`).catch(() => undefined);
        const lastMount = await Deno.readTextFile(`${stateDir}/mountpoint`).catch(() => undefined);
        code = await searchCommand({
          stateDir,
          layout,
          query: words.join(" "),
          limit,
          json: o.json,
          mountpoint: o.mountpoint ? abs(o.mountpoint) : lastMount,
        });
      },
    );

  program.command("rescan")
    .description("ask the running daemon to rescan its libraries")
    .option("--state-dir <dir>", "state dir of the daemon")
    .action(async (o: { stateDir?: string }) => {
      code = await rescanCommand({ stateDir: stateDirOf(o) });
    });

  program.command("check")
    .description("verify every store offline (library.db, search snapshot, chunk cache, lock)")
    .option("--state-dir <dir>", "state dir to check")
    .option("--cache-dir <dir>", "cache dir to check")
    .option("--cache-size <size>", "cache limit applied by --repair")
    .option("--repair", "apply the recoveries the daemon would")
    .action(
      async (o: { stateDir?: string; cacheDir?: string; cacheSize?: string; repair?: boolean }) => {
        code = await checkCommand({
          stateDir: stateDirOf(o),
          cacheDir: abs(o.cacheDir ?? defaultCacheDir()),
          repair: o.repair,
          cacheSize: o.cacheSize === undefined ? undefined : parseSize(o.cacheSize),
        });
      },
    );

  try {
    await program.parseAsync(args, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof UsageError) {
      console.error(`musicfs: ${e.message}`);
      return 2;
    }
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
