import assert from "node:assert/strict";
import { progressLine } from "./progress.ts";

const scan = {
  active: true,
  phase: "parsing",
  seen: 4001,
  unchanged: 0,
  total: 4001,
  parsed: 1000,
  committed: 900,
  walkDone: true,
};

Deno.test("progress line: a bar filled by files read, then counts that agree", () => {
  assert.equal(
    progressLine({ scan, tracks: 899 }),
    "[####................] 24% 1,000/4,001 files read, 899 tracks",
  );
  const walking = progressLine({ scan: { ...scan, phase: "walking", walkDone: false }, tracks: 5 });
  assert.match(walking, /^\[\.*#\.*\] 4,001 files found, 1,000 read, 5 tracks$/);
  assert.ok(progressLine({ scan, tracks: 1 }, 30).length <= 30);
});
