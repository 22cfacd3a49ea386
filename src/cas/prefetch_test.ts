import assert from "node:assert/strict";
import { Prefetcher } from "./prefetch.ts";
import { StoreFullError } from "./errors.ts";

/** A fetchChunk whose calls stay pending until the test releases them. */
function gatedFetcher() {
  const calls: { fileKey: string; chunkNo: number; signal: AbortSignal; release: () => void }[] =
    [];
  let active = 0;
  let maxActive = 0;
  const fetchChunk = (fileKey: string, chunkNo: number, signal: AbortSignal) => {
    active++;
    maxActive = Math.max(maxActive, active);
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        active--;
        resolve();
      };
      signal.addEventListener("abort", () => {
        active--;
        reject(signal.reason);
      }, { once: true });
      calls.push({ fileKey, chunkNo, signal, release: done });
    });
  };
  return {
    fetchChunk,
    calls,
    get active() {
      return active;
    },
    get maxActive() {
      return maxActive;
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("prefetcher respects its concurrency bound", async () => {
  const f = gatedFetcher();
  const p = new Prefetcher({ fetchChunk: f.fetchChunk, concurrency: 3 });
  assert.equal(p.enqueue("a", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 10);
  await tick();
  assert.equal(f.active, 3);
  assert.deepEqual(p.stats(), { fetched: 0, failed: 0, queued: 7, active: 3 });
  // Release one at a time; there are never more than 3 running and all 10 are fetched in order.
  while (f.calls.some((c) => !c.signal.aborted)) {
    const next = f.calls.shift()!;
    next.release();
    await tick();
    assert.ok(f.active <= 3);
    if (f.calls.length === 0) break;
  }
  await p.idle();
  assert.equal(f.maxActive, 3);
  assert.deepEqual(p.stats(), { fetched: 10, failed: 0, queued: 0, active: 0 });
  assert.equal(p.stopReason, undefined);
});

Deno.test("prefetcher fetches in FIFO order and skips pairs already queued", async () => {
  const seen: string[] = [];
  const p = new Prefetcher({
    fetchChunk: (k, n) => {
      seen.push(`${k}:${n}`);
      return Promise.resolve();
    },
    concurrency: 1,
  });
  assert.equal(p.enqueue("a", [0, 1, 2]), 3);
  assert.equal(p.enqueue("a", [1, 2, 3]), 1);
  p.enqueue("b", [0]);
  await p.idle();
  assert.deepEqual(seen, ["a:0", "a:1", "a:2", "a:3", "b:0"]);
  // Once done, the same chunk may be asked for again (it may have been evicted since).
  assert.equal(p.enqueue("a", [0]), 1);
  await p.idle();
  assert.equal(seen.length, 6);
});

Deno.test("prefetcher bounds its queue", async () => {
  const f = gatedFetcher();
  const p = new Prefetcher({ fetchChunk: f.fetchChunk, concurrency: 1, maxQueue: 5 });
  assert.equal(p.enqueue("a", Array.from({ length: 20 }, (_, i) => i)), 6);
  assert.equal(p.stats().queued, 5);
  p.stop();
  await p.idle();
});

Deno.test("prefetcher stops on abort", async () => {
  const f = gatedFetcher();
  const ac = new AbortController();
  const p = new Prefetcher({ fetchChunk: f.fetchChunk, concurrency: 2, signal: ac.signal });
  p.enqueue("a", [0, 1, 2, 3, 4]);
  await tick();
  assert.equal(f.calls.length, 2);
  ac.abort();
  await p.idle();
  assert.equal(p.stopReason, "aborted");
  assert.ok(f.calls.every((c) => c.signal.aborted), "fetches in flight see the abort");
  assert.equal(f.calls.length, 2, "nothing queued starts after the abort");
  assert.deepEqual(p.stats(), { fetched: 0, failed: 0, queued: 0, active: 0 });
  assert.equal(p.enqueue("b", [0]), 0);
  await tick();
  assert.equal(f.calls.length, 2);
});

Deno.test("prefetcher given an aborted signal never fetches", async () => {
  let calls = 0;
  const p = new Prefetcher({
    fetchChunk: () => Promise.resolve(calls++),
    signal: AbortSignal.abort(),
  });
  assert.equal(p.enqueue("a", [0, 1]), 0);
  await p.idle();
  assert.equal(calls, 0);
  assert.equal(p.stopReason, "aborted");
});

Deno.test("prefetcher stops when the cache is full", async () => {
  const started: number[] = [];
  let inflightAborted = false;
  const p = new Prefetcher({
    concurrency: 2,
    fetchChunk: (_k, n, signal) => {
      started.push(n);
      if (n === 2) return Promise.reject(new StoreFullError(100, 100, 10));
      return new Promise((resolve, reject) => {
        if (n === 3) {
          signal.addEventListener("abort", () => {
            inflightAborted = true;
            reject(signal.reason);
          });
        } else resolve(undefined);
      });
    },
  });
  p.enqueue("a", [0, 1, 2, 3, 4, 5, 6]);
  await p.idle();
  assert.equal(p.stopReason, "full");
  assert.ok(inflightAborted, "the fetch running beside the failed one is aborted");
  assert.deepEqual(started, [0, 1, 2, 3]);
  assert.equal(p.stats().fetched, 2);
  assert.equal(p.enqueue("a", [7]), 0);
});

Deno.test("prefetcher keeps going after an origin error", async () => {
  const p = new Prefetcher({
    concurrency: 1,
    fetchChunk: (_k, n) => n === 1 ? Promise.reject(new Error("EIO")) : Promise.resolve(),
  });
  p.enqueue("a", [0, 1, 2]);
  await p.idle();
  assert.equal(p.stopReason, undefined);
  assert.deepEqual(p.stats(), { fetched: 2, failed: 1, queued: 0, active: 0 });
});
