/** The command line: commander program, one-line errors and exit codes (SPEC.md section 1). */
import { Command, CommanderError } from "commander";

/** The version printed by `musicfs --version`. */
export const VERSION = "0.1.0";

/** Run the CLI with `args` (no program name); resolves to the process exit code. */
export async function main(args: string[]): Promise<number> {
  const program = new Command("musicfs")
    .description("Mount music folders as a read-only filesystem organized by tags")
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeErr: (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)) });
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0;
      return 2;
    }
    console.error(`musicfs: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}
