import assert from "node:assert/strict";
import { AttrShare } from "./attr_share.ts";

const attr = (fill: number) => new Uint8Array(88).fill(fill);

Deno.test("attr share: put, get (with the TTL), replace, delete", () => {
  const s = new AttrShare(16);
  const out = new Uint8Array(104 + 8);
  assert.equal(s.get(5, out, 8), false);
  s.put(5, attr(7), 0, 1500);
  assert.equal(s.get(5, out, 8), true);
  const v = new DataView(out.buffer, 8);
  assert.equal(v.getUint32(0, true), 1, "attr_valid seconds");
  assert.equal(v.getUint32(8, true), 500_000_000, "attr_valid nsec");
  assert.deepEqual(out.subarray(8 + 16), attr(7));
  s.put(5, attr(9), 0, 1000);
  assert.equal(s.size, 1);
  s.get(5, out, 8);
  assert.deepEqual(out.subarray(8 + 16), attr(9));
  s.delete(5);
  assert.equal(s.get(5, out, 8), false);
  assert.equal(s.size, 0);
  s.put(2 ** 40 + 3, attr(1), 0, 1000);
  assert.equal(s.get(2 ** 40 + 3, out, 8), true, "inodes past 32 bits");
  assert.equal(s.get(3, out, 8), false);
});

Deno.test("attr share: a full table skips inserts; tombstones are reclaimed", () => {
  const s = new AttrShare(64);
  for (let i = 1; i <= 100; i++) s.put(i, attr(i), 0, 1000);
  assert.equal(s.size, 48, "at most 3/4 full");
  const out = new Uint8Array(104);
  assert.equal(s.get(49, out, 0), false, "skipped");
  for (let i = 1; i <= 48; i++) assert.equal(s.get(i, out, 0) && out[16] === i, true);
  // Churn: deleting and adding forever must not fill the table with tombstones.
  for (let round = 0; round < 20; round++) {
    for (let i = 1; i <= 48; i++) s.delete(round * 1000 + i);
    for (let i = 1; i <= 48; i++) s.put((round + 1) * 1000 + i, attr(i), 0, 1000);
  }
  assert.equal(s.size, 48);
  for (let i = 1; i <= 48; i++) assert.equal(s.get(20_000 + i, out, 0), true);
});

Deno.test("attr share: a reader thread never sees a torn entry", async () => {
  const s = new AttrShare(1024);
  for (let i = 1; i <= 500; i++) s.put(i, attr(1), 0, 1000);
  const src = `
    import { AttrShare } from "${new URL("./attr_share.ts", import.meta.url).href}";
    self.onmessage = (e) => {
      const s = new AttrShare(e.data.sab);
      const out = new Uint8Array(104);
      let hits = 0, torn = 0;
      const end = performance.now() + e.data.ms;
      while (performance.now() < end) {
        for (let i = 1; i <= 500; i += 7) {
          if (!s.get(i, out, 0)) continue;
          hits++;
          for (let j = 17; j < 104; j++) if (out[j] !== out[16]) { torn++; break; }
        }
      }
      self.postMessage({ hits, torn });
    };`;
  const url = `data:application/typescript;base64,${btoa(src)}`;
  const w = new Worker(url, { type: "module" });
  try {
    const done = new Promise<{ hits: number; torn: number }>((
      r,
    ) => (w.onmessage = (e) => r(e.data)));
    w.postMessage({ sab: s.sab, ms: 300 });
    const end = performance.now() + 300;
    let k = 0;
    while (performance.now() < end) {
      for (let i = 1; i <= 500; i++) s.put(i, attr(k & 0xff), 0, 1000);
      for (let i = 1; i <= 500; i += 11) s.delete(i);
      k++;
      await new Promise((r) => setTimeout(r, 0));
    }
    const { hits, torn } = await done;
    assert.equal(torn, 0);
    assert.ok(hits > 0, "the reader read something");
  } finally {
    w.terminate();
  }
});
