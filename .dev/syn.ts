import { synopsis } from "../src/cli/mod.ts";
console.log(synopsis());
