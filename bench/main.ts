/**
 * `deno task bench`: runs every `bench/*_bench.ts` module (or those named on the command line)
 * and prints one table of measured figures against same-run baselines. `--quick` uses smaller
 * sizes for a smoke run. A module that exports `explicitOnly` (the long `scale` bench) runs only
 * when named.
 */
import type { BenchModule, BenchRow } from "./common.ts";

const args = Deno.args.filter((a) => !a.startsWith("--"));
const quick = Deno.args.includes("--quick");
const dir = new URL(".", import.meta.url);
const names: string[] = [];
for await (const e of Deno.readDir(dir)) {
  if (e.isFile && e.name.endsWith("_bench.ts")) names.push(e.name.slice(0, -"_bench.ts".length));
}
names.sort();
const rows: BenchRow[] = [];
for (const name of names) {
  if (args.length && !args.includes(name)) continue;
  const mod = (await import(new URL(`${name}_bench.ts`, dir).href)) as BenchModule;
  if (mod.explicitOnly && !args.includes(name)) {
    console.error(`bench: ${name} skipped (run it by name: deno task bench ${name})`);
    continue;
  }
  console.error(`bench: ${name}...`);
  try {
    rows.push(...(await mod.run({ quick })));
  } catch (e) {
    rows.push({ name: `${name}: failed`, measured: String(e instanceof Error ? e.message : e) });
  }
}
const table = [["benchmark", "measured", "baseline", "ratio", "goal", ""]];
for (const r of rows) {
  table.push([
    r.name,
    r.measured,
    r.baseline ?? "",
    r.ratio === undefined ? "" : `${r.ratio.toFixed(2)}x`,
    r.goal ?? "",
    r.ok === undefined ? "" : r.ok ? "ok" : "MISSED",
  ]);
}
const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
for (const r of table) console.log("| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |");
