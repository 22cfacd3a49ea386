import assert from "node:assert/strict";
import { createEngine } from "./engine.ts";
import { loadEngine, serialiseBody, SNAPSHOT_FORMAT_VERSION } from "./snapshot.ts";
import { toDocument } from "./text.ts";
import { syntheticTracks } from "./testdata/synthetic.ts";
import { executeQuery } from "./query.ts";

function engineOf(n: number) {
  const ms = createEngine();
  for (const t of syntheticTracks(n, 12)) ms.add(toDocument(t));
  return ms;
}

Deno.test("the streamed body is minisearch's own JSON", () => {
  const ms = engineOf(3000);
  const body = [...serialiseBody(ms)].join("");
  assert.ok(body.split("\n").length > 1000, "one index entry per line");
  assert.deepEqual(JSON.parse(body), JSON.parse(JSON.stringify(ms)));
});

Deno.test("the streamed body leaves out discarded documents", () => {
  const ms = engineOf(500);
  for (let id = 1; id <= 100; id++) ms.discard(id);
  const js = JSON.parse([...serialiseBody(ms)].join(""));
  assert.equal(js.documentCount, 400);
  assert.equal(js.dirtCount, 0);
  const live = new Set(Object.keys(js.documentIds));
  assert.equal(live.size, 400);
  for (const [, fields] of js.index) {
    for (const postings of Object.values(fields as Record<string, object>)) {
      for (const short of Object.keys(postings)) assert.ok(live.has(short));
    }
  }
});

Deno.test("loadEngine reads sliced and plain minisearch JSON alike", async () => {
  const ms = engineOf(2000);
  const header = { version: SNAPSHOT_FORMAT_VERSION, documentCount: 2000, generation: 0 };
  const encode = (s: string) => new TextEncoder().encode(s);
  const sliced = encode([...serialiseBody(ms)].join(""));
  const plain = encode(JSON.stringify(ms));
  const a = await loadEngine("a", { header: { ...header, bodySize: sliced.length }, body: sliced });
  const b = await loadEngine("b", { header: { ...header, bodySize: plain.length }, body: plain });
  for (const q of ["the", "love", "ka", "mar", "rock", "the love"]) {
    const expected = executeQuery(ms, q, 50);
    assert.ok(expected.length > 0, q);
    for (const loaded of [a, b]) {
      const got = executeQuery(loaded, q, 50);
      // Summation order may differ after a reload: equal up to rounding.
      assert.deepEqual(got.map((r) => r.id), expected.map((r) => r.id), q);
      got.forEach((r, i) => assert.ok(Math.abs(r.score - expected[i].score) < 1e-9, q));
    }
  }
  const wrongCount = { ...header, documentCount: 1999, bodySize: plain.length };
  await assert.rejects(loadEngine("c", { header: wrongCount, body: plain }), {
    name: "SearchSnapshotCorruptError",
    message: "Cannot open search snapshot: body does not match the header (c)",
  });
});
