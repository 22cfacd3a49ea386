/** The `musicfs` command: parse the command line and hand over to src/cli. */
import { main } from "./src/cli/mod.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
