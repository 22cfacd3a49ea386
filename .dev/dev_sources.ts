import { summaryTable, Torture } from "/work/wt/i12a/tests/torture/harness.ts";
import { sourceFaults } from "/work/wt/i12a/tests/torture/sources.ts";
const t = await Torture.create({ seed: 1234, tracks: 2, verbose: true });
const t0 = Date.now();
try {
  await sourceFaults(t, { tracks: 8 });
} finally {
  await t.cleanup();
}
console.log(summaryTable(t.stats, 1234, Date.now() - t0));
for (const v of t.stats.violations) console.log("VIOLATION:", v.slice(0, 2000));
