import assert from "node:assert/strict";
import { CachedReader, type ChunkCache, type SourceFile } from "./reader.ts";
import { CasStore } from "./store.ts";
import { StoreFullError } from "./errors.ts";
import { Prefetcher } from "./prefetch.ts";
import { CasReadError } from "./errors.ts";

const CHUNK = 1000;

interface Env {
  dir: string;
  root: string;
  cas: CasStore;
}

/** A library root and an open CasStore in a fresh temp dir, removed afterwards. */
async function withEnv(fn: (env: Env) => Promise<void>, maxSize = 10_000_000): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-reader-" });
  const root = `${dir}/lib`;
  await Deno.mkdir(root);
  const cas = await CasStore.open({ dir: `${dir}/cache`, maxSize });
  try {
    await fn({ dir, root, cas });
  } finally {
    await cas.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function bytesOf(seed: number, size: number): Uint8Array {
  const b = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Write `data` to `path` and describe it as the library would after a scan. */
async function source(
  originId: string,
  path: string,
  data: Uint8Array,
  id = 1,
): Promise<SourceFile> {
  await Deno.writeFile(path, data);
  const st = await Deno.stat(path);
  return { originId, id, size: st.size, mtimeMs: st.mtime!.getTime(), path };
}

async function readAt(r: CachedReader, f: SourceFile, offset: number, length: number) {
  const dst = new Uint8Array(length);
  const n = await r.read(f, offset, dst);
  return dst.subarray(0, n);
}

async function rejectsWithEio(p: Promise<unknown>, pattern?: RegExp): Promise<CasReadError> {
  const err = await p.then(() => assert.fail("expected EIO"), (e) => e);
  assert.ok(err instanceof CasReadError, String(err));
  if (pattern) assert.match(err.message, pattern);
  return err;
}

/** A FIFO: opening it for reading blocks until a writer comes, like a dead network share. */
async function fifo(path: string): Promise<{ unblock(): Promise<void> }> {
  const out = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(out.success, "mkfifo failed");
  return {
    // A reader stuck in open() gets EOF; with none waiting this gives up after a second.
    async unblock() {
      await new Deno.Command("timeout", { args: ["1", "sh", "-c", `: > '${path}'`] }).output();
    },
  };
}

Deno.test("reader: bytes match the source across chunk boundaries and odd offsets", async () => {
  await withEnv(async ({ root, cas }) => {
    const data = bytesOf(1, 5 * CHUNK + 555);
    const f = await source("a", `${root}/a.flac`, data);
    const r = new CachedReader({ cas, chunkSize: CHUNK });
    assert.equal(r.chunkCount(f.size), 6);
    const cases: [number, number][] = [
      [0, 1],
      [0, CHUNK],
      [999, 2],
      [1, 3 * CHUNK],
      [1234, 777],
      [4567, 2 * CHUNK + 13],
      [5 * CHUNK, 555],
      [5 * CHUNK + 554, 100],
      [0, data.length],
      [0, 2 * data.length],
    ];
    for (const [offset, length] of cases) {
      const got = await readAt(r, f, offset, length);
      assert.deepEqual(got, data.subarray(offset, offset + length), `read(${offset}, ${length})`);
    }
    assert.equal(await r.read(f, data.length, new Uint8Array(10)), 0);
    assert.equal(await r.read(f, data.length + 5000, new Uint8Array(10)), 0);
    assert.equal(await r.read(f, 10, new Uint8Array(0)), 0);
    await rejectsInvalid(r.read(f, -1, new Uint8Array(1)));
    await r.idle();
  });
});

async function rejectsInvalid(p: Promise<unknown>) {
  const err = await p.then(() => assert.fail("expected EINVAL"), (e) => e);
  assert.ok(err instanceof RangeError, String(err));
}

Deno.test("reader: a second read is served from the cache after the origin is renamed away", async () => {
  await withEnv(async ({ dir, root, cas }) => {
    const data = bytesOf(2, 3 * CHUNK + 10);
    const f = await source("nas", `${root}/a.flac`, data);
    const first = new CachedReader({ cas, chunkSize: CHUNK });
    assert.deepEqual(await readAt(first, f, 0, data.length), data);
    await first.idle();
    await Deno.rename(root, `${dir}/away`);

    // A new reader with no memory of its own: only the CAS can answer, with the origin down.
    const again = new CachedReader({
      cas,
      chunkSize: CHUNK,
      memoryChunks: 0,
      health: { isHealthy: () => false },
    });
    assert.deepEqual(await readAt(again, f, 0, data.length), data);
    assert.deepEqual(await readAt(again, f, 1500, 1000), data.subarray(1500, 2500));
  });
});

Deno.test("reader: an uncached read of an unhealthy origin fails with EIO without touching it", async () => {
  await withEnv(async ({ root, cas }) => {
    // Opening the FIFO would block: an answer proves the origin was not touched.
    const pipe = await fifo(`${root}/a.flac`);
    try {
      const f: SourceFile = {
        originId: "nas",
        id: 1,
        size: 5000,
        mtimeMs: 1,
        path: `${root}/a.flac`,
      };
      const r = new CachedReader({
        cas,
        chunkSize: CHUNK,
        health: { isHealthy: (id) => id !== "nas" },
        readTimeoutMs: 60_000,
      });
      await rejectsWithEio(r.read(f, 0, new Uint8Array(10)), /origin nas is unavailable/);
      await rejectsWithEio(r.fetchChunk(r.prefetchFile(f).key, 2));
    } finally {
      await pipe.unblock();
    }
  });
});

Deno.test("reader: an uncached read of a gone origin fails with EIO", async () => {
  await withEnv(async ({ dir, root, cas }) => {
    const f = await source("nas", `${root}/a.flac`, bytesOf(3, 100));
    await Deno.rename(root, `${dir}/away`);
    const r = new CachedReader({ cas, chunkSize: CHUNK });
    const err = await rejectsWithEio(r.read(f, 0, new Uint8Array(10)), /a\.flac/);
    assert.ok(err.cause instanceof Deno.errors.NotFound, String(err.cause));
  });
});

Deno.test(
  "reader: a source read that exceeds the timeout fails with EIO and is not retried while stuck",
  {
    sanitizeOps: false,
    sanitizeResources: false,
  },
  async () => {
    await withEnv(async ({ root, cas }) => {
      const pipe = await fifo(`${root}/slow.flac`);
      try {
        const f: SourceFile = {
          originId: "nas",
          id: 1,
          size: 5000,
          mtimeMs: 1,
          path: `${root}/slow.flac`,
        };
        const r = new CachedReader({ cas, chunkSize: CHUNK, readTimeoutMs: 500 });
        const t0 = performance.now();
        await rejectsWithEio(
          r.read(f, 0, new Uint8Array(10)),
          /no answer from the origin within 500 ms/,
        );
        assert.ok(performance.now() - t0 < 2000, "the read waited for the stuck origin");

        // The first read is still stuck: another miss of the same origin must not add a second.
        await rejectsWithEio(r.read(f, 3000, new Uint8Array(10)), /still stuck/);

        // The server answers again: once the stuck read has returned, the origin is read again.
        await pipe.unblock();
        await Deno.remove(f.path);
        const data = bytesOf(9, f.size);
        await Deno.writeFile(f.path, data);
        await Deno.utime(f.path, new Date(), new Date(f.mtimeMs));
        let got: Uint8Array | undefined;
        for (let i = 0; i < 100 && !got; i++) {
          got = await readAt(r, f, 3000, 10).catch((e) => {
            assert.match(e.message, /still stuck/);
            return new Promise<undefined>((res) => setTimeout(res, 20));
          });
        }
        assert.deepEqual(got, data.subarray(3000, 3010));
      } finally {
        await pipe.unblock();
      }
    });
  },
);

Deno.test("reader: a changed source does not serve stale chunks", async () => {
  await withEnv(async ({ root, cas }) => {
    const path = `${root}/a.flac`;
    const v1 = await source("a", path, bytesOf(4, 2 * CHUNK + 100));
    const r = new CachedReader({ cas, chunkSize: CHUNK });
    assert.deepEqual(await readAt(r, v1, 0, CHUNK), bytesOf(4, CHUNK));
    await r.idle();

    const newData = bytesOf(5, 2 * CHUNK + 300);
    await Deno.writeFile(path, newData);
    await Deno.utime(path, new Date(), new Date(v1.mtimeMs + 60_000));
    const st = await Deno.stat(path);
    const v2: SourceFile = { ...v1, size: st.size, mtimeMs: st.mtime!.getTime() };
    assert.deepEqual(await readAt(r, v2, 0, newData.length), newData);

    // The old version, still what the library knows until the rescan: what is cached of it is
    // consistent, what is not cannot be fetched (the source has other bytes now).
    const fresh = new CachedReader({ cas, chunkSize: CHUNK, memoryChunks: 0 });
    assert.deepEqual(await readAt(fresh, v1, 0, CHUNK), bytesOf(4, CHUNK));
    await rejectsWithEio(readAt(fresh, v1, CHUNK, 10), /changed since it was scanned/);
    await r.idle();
  });
});

Deno.test("reader: a full store still serves reads", async () => {
  await withEnv(async ({ root, cas }) => {
    const data = bytesOf(6, 3 * CHUNK);
    const f = await source("a", `${root}/a.flac`, data);
    const r = new CachedReader({ cas, chunkSize: CHUNK });
    assert.deepEqual(await readAt(r, f, 500, 2000), data.subarray(500, 2500));
    await r.idle();
    assert.equal(cas.stats().chunks, 0);
    // The prefetcher is told, so it stops instead of fetching what cannot be kept.
    const { key, chunkNos } = r.prefetchFile(f);
    assert.ok(chunkNos.includes(2));
    const err = await r.fetchChunk(key, 2).then(() => undefined, (e) => e);
    assert.ok(err instanceof StoreFullError, String(err));
  }, 100);
});

Deno.test("reader: concurrent reads of a missing chunk share one fetch", async () => {
  await withEnv(async ({ root, cas }) => {
    const data = bytesOf(7, 2 * CHUNK);
    const f = await source("a", `${root}/a.flac`, data);
    let lookups = 0;
    let stores = 0;
    const counting: ChunkCache = {
      getChunkFor: (k, n) => cas.getChunkFor(k, n),
      readChunkFor: (k, n) => {
        lookups++;
        return cas.readChunkFor(k, n);
      },
      storeChunkFor: (k, n, b) => {
        stores++;
        return cas.storeChunkFor(k, n, b);
      },
    };
    const r = new CachedReader({ cas: counting, chunkSize: CHUNK, memoryChunks: 0 });
    const reads = Array.from({ length: 10 }, (_, i) => readAt(r, f, i * 50, 100));
    const got = await Promise.all(reads);
    got.forEach((b, i) => assert.deepEqual(b, data.subarray(i * 50, i * 50 + 100)));
    assert.equal(lookups, 1);
    assert.equal(stores, 1);
    await r.idle();
    // Once stored, the next read is a cache lookup, not a fetch.
    assert.deepEqual(await readAt(r, f, 0, 10), data.subarray(0, 10));
    assert.equal(stores, 1);
  });
});

Deno.test("reader: the prefetcher fills the cache for a file", async () => {
  await withEnv(async ({ dir, root, cas }) => {
    const data = bytesOf(8, 4 * CHUNK + 1);
    const f = await source("a", `${root}/a.flac`, data);
    const r = new CachedReader({ cas, chunkSize: CHUNK, memoryChunks: 0 });
    const ac = new AbortController();
    const prefetcher = new Prefetcher({ fetchChunk: r.fetchChunk, signal: ac.signal });
    try {
      const { key, chunkNos } = r.prefetchFile(f, 1500);
      assert.deepEqual(chunkNos, [1, 2, 3, 4]);
      assert.equal(prefetcher.enqueue(key, chunkNos), 4);
      await prefetcher.idle();
      assert.equal(prefetcher.stats().fetched, 4);
      assert.deepEqual(r.prefetchFile(f).chunkNos, [0]);
      await Deno.rename(root, `${dir}/away`);
      assert.deepEqual(await readAt(r, f, CHUNK, data.length), data.subarray(CHUNK));
      await rejectsWithEio(readAt(r, f, 0, 10));
    } finally {
      ac.abort();
    }
    await assert.rejects(r.fetchChunk("unknown@1:1", 0), /not registered/);
  });
});
