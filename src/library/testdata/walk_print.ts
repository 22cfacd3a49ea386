/** Walk Deno.args[0] and print every batch as one JSON line (for walk_test.ts under setpriv). */
import { walkTree } from "../walk.ts";

walkTree(Deno.args[0], Deno.args[1] ?? "", (b) => console.log(JSON.stringify(b)));
