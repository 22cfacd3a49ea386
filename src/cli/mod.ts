/** The command line: commander program, one-line errors and exit codes (SPEC.md section 1). */
import { Command, CommanderError } from "commander";
import { mountCommand, type MountFlags, UsageError } from "./mount.ts";
import { DemoFs, FuseSession, MountError } from "../fuse/mod.ts";

export {
  defaultCacheDir,
  defaultStateDir,
  parseSize,
  resolveMountOptions,
  UsageError,
} from "./mount.ts";

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
    .option("--log-level <level>", "trace | debug | info | warning | error (default info)")
    .option("--log-format <format>", "text | json (default text)")
    .option("--demo", "serve a small in-memory demo tree instead (tests the FUSE layer)")
    .action(async (libraries: string[], flags: MountFlags & { demo?: boolean }) => {
      code = flags.demo
        ? await demoMount(flags.mountpoint ?? libraries[0])
        : await mountCommand(libraries, flags, VERSION);
    });

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
