import assert from "node:assert/strict";
import { CasStore, fileKey, sha256Hex } from "./store.ts";
import { CasWriteError, StoreFullError } from "./errors.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cas-" });
  try {
    await fn(dir);
  } finally {
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

/** Every file under `<dir>/chunks`, by name, with its size. */
async function chunkFilesOnDisk(dir: string): Promise<Map<string, { path: string; size: number }>> {
  const out = new Map<string, { path: string; size: number }>();
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else out.set(e.name, { path: p, size: (await Deno.stat(p)).size });
    }
  };
  await walk(`${dir}/chunks`);
  return out;
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("cas put handles enospc", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 100 });
    try {
      const err = await store.put(new Uint8Array(1000)).then(
        () => assert.fail("a 1000-byte put into a 100-byte cache must be rejected"),
        (e) => e,
      );
      assert.ok(err instanceof StoreFullError, String(err));
      assert.equal(err.name, "StoreFullError");
      assert.equal(err.current, 0);
      assert.equal(err.max, 100);
      assert.match(err.message, /^Cannot store chunk: .*100 B/);
      assert.deepEqual(store.stats(), { chunks: 0, bytes: 0, maxSize: 100 });
      assert.equal((await chunkFilesOnDisk(dir)).size, 0);
      assert.deepEqual(await listDir(`${dir}/tmp`), []);
      // Something that fits is still accepted.
      const h = await store.put(new Uint8Array(60));
      assert.equal(store.stats().bytes, 60);
      assert.equal((await store.get(h))?.length, 60);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas put and get round-trip bytes under their sha-256", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1 << 20 });
    try {
      const data = bytesOf(1, 5000);
      const h = await store.put(data);
      const { createHash } = await import("node:crypto");
      assert.equal(h, createHash("sha256").update(data).digest("hex"));
      assert.ok(store.has(h));
      assert.deepEqual(await store.get(h), data);
      const files = await chunkFilesOnDisk(dir);
      assert.deepEqual([...files.keys()], [h]);
      assert.equal(files.get(h)!.path, `${dir}/chunks/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`);
      assert.equal(store.chunkPath(h), files.get(h)!.path);
      assert.equal(await store.get("0".repeat(64)), null);
      assert.deepEqual(store.stats(), { chunks: 1, bytes: 5000, maxSize: 1 << 20 });
      assert.equal(await store.delete(h), true);
      assert.equal(await store.delete(h), false);
      assert.equal(store.has(h), false);
      assert.equal((await chunkFilesOnDisk(dir)).size, 0);
      assert.equal(store.stats().bytes, 0);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas shardLevels sets the directory depth", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1 << 20, shardLevels: 1 });
    try {
      const h = await store.put(bytesOf(2, 10));
      assert.ok(await Deno.stat(`${dir}/chunks/${h.slice(0, 2)}/${h}`));
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas dedup stores the same bytes once", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1 << 20 });
    try {
      const data = bytesOf(3, 4096);
      // Concurrent puts of the same bytes, then a later one.
      const hashes = await Promise.all([1, 2, 3, 4].map(() => store.put(data.slice())));
      hashes.push(await store.put(data.slice()));
      assert.equal(new Set(hashes).size, 1);
      assert.deepEqual(store.stats(), { chunks: 1, bytes: 4096, maxSize: 1 << 20 });
      assert.equal((await chunkFilesOnDisk(dir)).size, 1);
      assert.deepEqual(await listDir(`${dir}/tmp`), [], "the duplicate temp files are gone");
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas eviction keeps the store under maxSize across 1000 random puts", async () => {
  await withDir(async (dir) => {
    const maxSize = 64 * 1024;
    const store = await CasStore.open({ dir, maxSize });
    try {
      let rnd = 12345;
      const next = () => (rnd = (rnd * 1103515245 + 12345) % 2147483648);
      const recent: string[] = [];
      for (let i = 0; i < 1000; i++) {
        const size = 1 + (next() % 8192);
        // Some repeats, so dedup and LRU touches are part of the mix.
        const seed = next() % 10 === 0 ? 7 : i + 100;
        const data = bytesOf(seed, seed === 7 ? 3000 : size);
        const h = await store.put(data);
        recent.push(h);
        const s = store.stats();
        assert.ok(s.bytes <= maxSize, `after put ${i}: ${s.bytes} > ${maxSize}`);
        if (i % 7 === 0) await store.get(recent[Math.max(0, recent.length - 1 - (next() % 20))]);
      }
      // The most recent chunk is always there.
      assert.ok(store.has(recent[recent.length - 1]));
      const files = await chunkFilesOnDisk(dir);
      const onDisk = [...files.values()].reduce((n, f) => n + f.size, 0);
      assert.ok(onDisk <= maxSize, `${onDisk} bytes of chunk files > ${maxSize}`);
      assert.equal(onDisk, store.stats().bytes);
      assert.equal(files.size, store.stats().chunks);
      for (const h of files.keys()) assert.ok(store.has(h));
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas concurrent puts never overshoot maxSize", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 10_000 });
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 60 }, (_, i) => store.put(bytesOf(i + 1, 900))),
      );
      assert.ok(results.every((r) => r.status === "fulfilled"));
      assert.ok(store.stats().bytes <= 10_000);
      const files = await chunkFilesOnDisk(dir);
      assert.ok([...files.values()].reduce((n, f) => n + f.size, 0) <= 10_000);
      assert.equal(files.size, store.stats().chunks);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas dedup hit counts as an access for LRU", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 300 });
    try {
      const a = await store.put(bytesOf(15, 100));
      const b = await store.put(bytesOf(16, 100));
      assert.equal(await store.put(bytesOf(15, 100)), a);
      const c = await store.put(bytesOf(17, 100));
      const d = await store.put(bytesOf(18, 100));
      assert.deepEqual([a, b, c, d].map((h) => store.has(h)), [true, false, true, true]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas concurrent puts into a full store evict without overshooting", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1000 });
    try {
      for (let i = 0; i < 10; i++) await store.put(bytesOf(500 + i, 100));
      assert.equal(store.stats().bytes, 1000);
      // Each needs an eviction; none may count on a victim another one already took.
      await Promise.all(Array.from({ length: 8 }, (_, i) => store.put(bytesOf(600 + i, 150))));
      assert.ok(store.stats().bytes <= 1000, `${store.stats().bytes} > 1000`);
      const files = await chunkFilesOnDisk(dir);
      const onDisk = [...files.values()].reduce((n, f) => n + f.size, 0);
      assert.ok(onDisk <= 1000, `${onDisk} bytes of chunk files > 1000`);
      assert.equal(onDisk, store.stats().bytes);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas evicts the least recently used chunk first", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 300 });
    try {
      const a = await store.put(bytesOf(10, 100));
      const b = await store.put(bytesOf(11, 100));
      const c = await store.put(bytesOf(12, 100));
      assert.ok(await store.get(a));
      const d = await store.put(bytesOf(13, 100));
      assert.deepEqual([a, b, c, d].map((h) => store.has(h)), [true, false, true, true]);
      const files = await chunkFilesOnDisk(dir);
      assert.deepEqual([...files.keys()].sort(), [a, c, d].sort());
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas never evicts pinned chunks", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 200 });
    try {
      const a = await store.put(bytesOf(20, 100));
      const b = await store.put(bytesOf(21, 100));
      const unpinA = store.pin(a);
      const unpinB = store.pin(b);
      const err = await store.put(bytesOf(22, 100)).catch((e) => e);
      assert.ok(err instanceof StoreFullError);
      assert.equal(err.current, 200);
      assert.match(err.message, /cache is full \(200 B of 200 B\)/);
      unpinB();
      unpinB(); // idempotent: must not unpin a second holder
      const c = await store.put(bytesOf(22, 100));
      assert.deepEqual([a, b, c].map((h) => store.has(h)), [true, false, true]);
      unpinA();
      await store.put(bytesOf(23, 100));
      assert.equal(store.has(a), false);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas LRU order survives a reopen", async () => {
  await withDir(async (dir) => {
    let store = await CasStore.open({ dir, maxSize: 300 });
    const a = await store.put(bytesOf(30, 100));
    await new Promise((r) => setTimeout(r, 5)); // distinct access times
    const b = await store.put(bytesOf(31, 100));
    await new Promise((r) => setTimeout(r, 5));
    const c = await store.put(bytesOf(32, 100));
    await new Promise((r) => setTimeout(r, 5));
    assert.ok(await store.get(a));
    await store.close();
    store = await CasStore.open({ dir, maxSize: 300 });
    try {
      await store.put(bytesOf(33, 100));
      assert.deepEqual([a, b, c].map((h) => store.has(h)), [true, false, true]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas evicts down to a lowered maxSize at open", async () => {
  await withDir(async (dir) => {
    let store = await CasStore.open({ dir, maxSize: 1000 });
    const hashes = [];
    for (let i = 0; i < 5; i++) hashes.push(await store.put(bytesOf(40 + i, 100)));
    await store.close();
    const opened = await CasStore.openWithReport({ dir, maxSize: 250 });
    store = opened.store;
    try {
      assert.equal(opened.report.evicted, 3);
      assert.ok(store.stats().bytes <= 250);
      assert.equal((await chunkFilesOnDisk(dir)).size, 2);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas get drops a corrupt chunk (bit flip) and the store refills", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1 << 20 });
    try {
      const data = bytesOf(50, 3000);
      const h = await store.put(data);
      const path = store.chunkPath(h);
      const onDisk = await Deno.readFile(path);
      onDisk[1234] ^= 0x10;
      await Deno.writeFile(path, onDisk);
      assert.equal(await store.get(h), null);
      assert.equal(store.has(h), false);
      assert.equal(store.stats().bytes, 0);
      await store.put(new Uint8Array(1)); // let the removal of the bad file land
      await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
      // The caller refetches from the origin and stores it again.
      assert.equal(await store.put(data), h);
      assert.deepEqual(await store.get(h), data);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas get drops a missing or truncated chunk", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1 << 20 });
    try {
      const h1 = await store.put(bytesOf(51, 2000));
      const h2 = await store.put(bytesOf(52, 2000));
      await Deno.remove(store.chunkPath(h1));
      await Deno.truncate(store.chunkPath(h2), 1000);
      assert.equal(await store.get(h1), null);
      assert.equal(await store.get(h2), null);
      assert.deepEqual(store.stats(), { chunks: 0, bytes: 0, maxSize: 1 << 20 });
      assert.deepEqual(await store.get(await store.put(bytesOf(51, 2000))), bytesOf(51, 2000));
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas file-chunk map is keyed by file version", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 250 });
    try {
      const v1 = fileKey({ id: 7, size: 1000, mtimeMs: 1700000000000 });
      const v2 = fileKey({ id: 7, size: 1000, mtimeMs: 1700000000001 });
      assert.notEqual(v1, v2);
      const h = await store.storeChunkFor(v1, 0, bytesOf(60, 100));
      assert.equal(store.getChunkFor(v1, 0), h);
      assert.deepEqual(await store.readChunkFor(v1, 0), bytesOf(60, 100));
      assert.equal(store.getChunkFor(v1, 1), null);
      assert.equal(store.getChunkFor(v2, 0), null);
      assert.equal(await store.readChunkFor(v2, 0), null);
      // Evicted content: the mapping answers null rather than a hash that is gone.
      await store.put(bytesOf(61, 100));
      await store.put(bytesOf(62, 100));
      assert.equal(store.has(h), false);
      assert.equal(store.getChunkFor(v1, 0), null);
      assert.throws(() => store.putChunkFor(v1, -1, h), RangeError);
      assert.throws(() => store.putChunkFor(v1, 0, "xyz"), RangeError);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas file-chunk map survives a reopen", async () => {
  await withDir(async (dir) => {
    let store = await CasStore.open({ dir, maxSize: 1 << 20 });
    const key = fileKey({ id: "1:/a.flac", size: 10, mtimeMs: 5 });
    const h = await store.storeChunkFor(key, 3, bytesOf(63, 10));
    await store.close();
    store = await CasStore.open({ dir, maxSize: 1 << 20 });
    try {
      assert.equal(store.getChunkFor(key, 3), h);
      assert.deepEqual(await store.readChunkFor(key, 3), bytesOf(63, 10));
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas open removes orphan temp files and reconciles chunk files", async () => {
  await withDir(async (dir) => {
    let store = await CasStore.open({ dir, maxSize: 1 << 20 });
    const kept = await store.put(bytesOf(70, 500));
    const gone = await store.put(bytesOf(71, 500));
    const gonePath = store.chunkPath(gone);
    await store.close();
    // A crash mid-write, a chunk renamed in place whose index entry never committed, a torn
    // chunk, a stray temp file among the chunks and a chunk file deleted behind our back.
    await Deno.writeFile(`${dir}/tmp/abc.1.tmp`, new Uint8Array(10));
    const orphan = bytesOf(72, 700);
    const orphanHash = await sha256Hex(orphan);
    await Deno.mkdir(`${dir}/chunks/${orphanHash.slice(0, 2)}`, { recursive: true });
    await Deno.writeFile(`${dir}/chunks/${orphanHash.slice(0, 2)}/${orphanHash}`, orphan);
    const torn = await sha256Hex(bytesOf(73, 700));
    await Deno.mkdir(`${dir}/chunks/${torn.slice(0, 2)}/${torn.slice(2, 4)}`, { recursive: true });
    await Deno.writeFile(`${dir}/chunks/${torn.slice(0, 2)}/${torn.slice(2, 4)}/${torn}`, orphan);
    await Deno.writeFile(`${dir}/chunks/${torn.slice(0, 2)}/x.tmp`, orphan);
    await Deno.remove(gonePath);

    const opened = await CasStore.openWithReport({ dir, maxSize: 1 << 20 });
    store = opened.store;
    try {
      const r = opened.report;
      assert.equal(r.check.status, "ok");
      assert.equal(r.rebuiltBecause, undefined);
      assert.equal(r.removedTemps, 2);
      assert.equal(r.adopted, 1);
      assert.equal(r.removedBad, 1);
      assert.equal(r.droppedMissing, 1);
      assert.deepEqual(await listDir(`${dir}/tmp`), []);
      assert.deepEqual(await store.get(orphanHash), orphan);
      // Moved to its canonical shard path.
      assert.ok(await Deno.stat(store.chunkPath(orphanHash)));
      assert.deepEqual(await store.get(kept), bytesOf(70, 500));
      assert.equal(store.has(gone), false);
      assert.equal(store.has(torn), false);
      assert.deepEqual(store.stats(), { chunks: 2, bytes: 1200, maxSize: 1 << 20 });
      const files = await chunkFilesOnDisk(dir);
      assert.deepEqual([...files.keys()].sort(), [kept, orphanHash].sort());
    } finally {
      await store.close();
    }
  });
});

Deno.test({
  name: "cas real enospc on a small tmpfs leaves no partial files and recovers",
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  async fn() {
    await withDir(async (dir) => {
      const mnt = `${dir}/mnt`;
      await Deno.mkdir(mnt);
      const mount = await new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt],
      }).output();
      assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
      try {
        // The size check allows far more than the disk holds: the disk is what fills up.
        const store = await CasStore.open({ dir: `${mnt}/cache`, maxSize: 100 << 20 });
        try {
          const stored: string[] = [];
          let err: unknown;
          for (let i = 0; i < 40 && !err; i++) {
            try {
              stored.push(await store.put(bytesOf(80 + i, 96 * 1024)));
            } catch (e) {
              err = e;
            }
          }
          assert.ok(err instanceof CasWriteError, `expected CasWriteError, got ${err}`);
          assert.equal(err.code, "ENOSPC");
          assert.equal(err.name, "CasWriteError");
          assert.ok(err.cause, "the OS error is kept as cause");
          assert.match(err.message, /^Cannot store chunk: no space left on device/);
          assert.ok(stored.length > 0);
          assert.deepEqual(await listDir(`${mnt}/cache/tmp`), []);
          const files = await chunkFilesOnDisk(`${mnt}/cache`);
          assert.equal(files.size, stored.length);
          for (const [name, f] of files) {
            assert.equal(await sha256Hex(await Deno.readFile(f.path)), name, "no partial chunk");
          }
          assert.equal(store.stats().chunks, stored.length);
          for (const h of stored) assert.ok(await store.get(h));
          // Space comes back: the store keeps working.
          await store.delete(stored[0]);
          await store.delete(stored[1]);
          const h = await store.put(bytesOf(200, 96 * 1024));
          assert.deepEqual(await store.get(h), bytesOf(200, 96 * 1024));
        } finally {
          await store.close();
        }
        const again = await CasStore.open({ dir: `${mnt}/cache`, maxSize: 100 << 20 });
        await again.close();
      } finally {
        const umount = await new Deno.Command("umount", { args: [mnt] }).output();
        assert.ok(umount.success, new TextDecoder().decode(umount.stderr));
      }
    });
  },
});

Deno.test("cas rejects use after close", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1000 });
    const h = await store.put(bytesOf(90, 10));
    await store.close();
    await assert.rejects(store.put(bytesOf(91, 10)), { name: "CasClosedError" });
    await assert.rejects(store.get(h), { name: "CasClosedError" });
  });
});

// --- LMDB index damage -----------------------------------------------------------------------

type Damage =
  | "zeroed meta page"
  | "zeroed pages mid-file"
  | "random bytes mid-file"
  | "truncated to 0"
  | "truncated to half"
  | "deleted"
  | "index directory deleted"
  | "index replaced by a file"
  | "garbage files";

async function damageIndex(dir: string, how: Damage): Promise<void> {
  const path = `${dir}/index/data.mdb`;
  const size = (await Deno.stat(path)).size;
  const overwrite = async (offset: number, bytes: Uint8Array) => {
    const f = await Deno.open(path, { write: true });
    try {
      await f.seek(offset, Deno.SeekMode.Start);
      for (let o = 0; o < bytes.length;) o += await f.write(bytes.subarray(o));
    } finally {
      f.close();
    }
  };
  const mid = Math.floor(size / 2 / 4096) * 4096;
  switch (how) {
    case "zeroed meta page":
      return overwrite(0, new Uint8Array(4096));
    case "zeroed pages mid-file":
      return overwrite(mid, new Uint8Array(Math.min(8 * 4096, size - mid)));
    case "random bytes mid-file":
      return overwrite(mid, bytesOf(999, Math.min(8 * 4096, size - mid)));
    case "truncated to 0":
      return Deno.truncate(path, 0);
    case "truncated to half":
      return Deno.truncate(path, Math.floor(size / 2));
    case "deleted":
      return Deno.remove(path);
    case "index directory deleted":
      return Deno.remove(`${dir}/index`, { recursive: true });
    case "index replaced by a file":
      await Deno.remove(`${dir}/index`, { recursive: true });
      return Deno.writeFile(`${dir}/index`, new TextEncoder().encode("corrupted"));
    case "garbage files":
      // The seed's sled test: every index file overwritten with a short string.
      for await (const e of Deno.readDir(`${dir}/index`)) {
        await Deno.writeFile(`${dir}/index/${e.name}`, new TextEncoder().encode("corrupted"));
      }
  }
}

/** A store with chunks and enough file-chunk mappings to give data.mdb many pages. */
async function populated(dir: string): Promise<Map<string, Uint8Array>> {
  const store = await CasStore.open({ dir, maxSize: 1 << 20 });
  const chunks = new Map<string, Uint8Array>();
  try {
    for (let i = 0; i < 120; i++) {
      const data = bytesOf(1000 + i, 64 + i);
      const h = await store.put(data);
      chunks.set(h, data);
      for (let n = 0; n < 60; n++) store.putChunkFor(`file-${i}@${n}:0`, n, h);
    }
  } finally {
    await store.close();
  }
  return chunks;
}

async function assertRecovered(
  dir: string,
  chunks: Map<string, Uint8Array>,
  expectRebuild: boolean,
): Promise<void> {
  const { store, report } = await CasStore.openWithReport({ dir, maxSize: 1 << 20 });
  try {
    if (expectRebuild) {
      assert.ok(report.rebuiltBecause, `expected a rebuild, got ${JSON.stringify(report)}`);
      assert.equal(report.adopted, chunks.size);
    }
    assert.equal(store.stats().chunks, chunks.size);
    for (const [h, data] of chunks) assert.deepEqual(await store.get(h), data, h);
    assert.deepEqual(
      store.stats(),
      {
        chunks: chunks.size,
        bytes: [...chunks.values()].reduce((n, d) => n + d.length, 0),
        maxSize: 1 << 20,
      },
    );
    // The rebuilt index is a working one.
    const h = await store.storeChunkFor("new@1:1", 0, bytesOf(5, 77));
    assert.equal(store.getChunkFor("new@1:1", 0), h);
  } finally {
    await store.close();
  }
  // And it opens cleanly the next time, without another rebuild.
  const again = await CasStore.openWithReport({ dir, maxSize: 1 << 20 });
  try {
    assert.equal(again.report.check.status, "ok");
    assert.equal(again.report.rebuiltBecause, undefined);
    assert.equal(again.store.stats().chunks, chunks.size + 1);
  } finally {
    await again.store.close();
  }
}

Deno.test("lmdb corruption triggers repair", async () => {
  await withDir(async (dir) => {
    const chunks = await populated(dir);
    await damageIndex(dir, "garbage files");
    const { store, report } = await CasStore.openWithReport({ dir, maxSize: 1 << 20 });
    try {
      assert.equal(report.check.status, "damaged");
      assert.ok(report.rebuiltBecause);
      assert.ok(report.movedTo?.startsWith(`${dir}/index.corrupt-`), report.movedTo);
      assert.ok(await Deno.stat(report.movedTo!), "the damaged index is kept aside");
      assert.equal(store.stats().chunks, chunks.size);
      for (const [h, data] of chunks) assert.deepEqual(await store.get(h), data);
    } finally {
      await store.close();
    }
  });
});

for (
  const how of [
    "zeroed meta page",
    "zeroed pages mid-file",
    "truncated to 0",
    "truncated to half",
    "deleted",
    "index directory deleted",
    "index replaced by a file",
  ] as const
) {
  Deno.test(`lmdb damage recovers: ${how}`, async () => {
    await withDir(async (dir) => {
      const chunks = await populated(dir);
      await damageIndex(dir, how);
      await assertRecovered(dir, chunks, true);
    });
  });
}

Deno.test("lmdb damage recovers: random bytes mid-file", async () => {
  await withDir(async (dir) => {
    const chunks = await populated(dir);
    await damageIndex(dir, "random bytes mid-file");
    // Random bytes may land on a free page and harm nothing; either way every chunk is back.
    await assertRecovered(dir, chunks, false);
  });
});

Deno.test("lmdb index emptied while chunk files exist is rebuilt", async () => {
  await withDir(async (dir) => {
    const chunks = await populated(dir);
    // A valid but empty index, as an lmdb file truncated to 0 and reopened read-write becomes.
    const other = `${dir}/other`;
    await (await CasStore.open({ dir: other, maxSize: 1000 })).close();
    await Deno.remove(`${dir}/index`, { recursive: true });
    await Deno.rename(`${other}/index`, `${dir}/index`);
    await Deno.remove(other, { recursive: true });
    const { store, report } = await CasStore.openWithReport({ dir, maxSize: 1 << 20 });
    try {
      assert.equal(report.check.status, "ok");
      assert.match(report.rebuiltBecause ?? "", /index is empty but 120 chunk files exist/);
      assert.equal(store.stats().chunks, chunks.size);
    } finally {
      await store.close();
    }
  });
});

Deno.test("lmdb repair deletes chunk files that fail verification", async () => {
  await withDir(async (dir) => {
    const chunks = await populated(dir);
    const [bad] = chunks.keys();
    const path = `${dir}/chunks/${bad.slice(0, 2)}/${bad.slice(2, 4)}/${bad}`;
    const data = await Deno.readFile(path);
    data[0] ^= 1;
    await Deno.writeFile(path, data);
    await damageIndex(dir, "zeroed meta page");
    const { store, report } = await CasStore.openWithReport({ dir, maxSize: 1 << 20 });
    try {
      assert.equal(report.adopted, chunks.size - 1);
      assert.equal(report.removedBad, 1);
      assert.equal(store.has(bad), false);
      await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
    } finally {
      await store.close();
    }
  });
});

Deno.test("lmdb repair keeps the newest 3 damaged indexes", async () => {
  await withDir(async (dir) => {
    await populated(dir);
    const moved: string[] = [];
    for (let i = 0; i < 4; i++) {
      await damageIndex(dir, "zeroed meta page");
      const { store, report } = await CasStore.openWithReport({ dir, maxSize: 1 << 20 });
      await store.close();
      assert.ok(report.movedTo);
      moved.push(report.movedTo.slice(dir.length + 1));
    }
    const kept = (await listDir(dir)).filter((n) => n.startsWith("index.corrupt-"));
    assert.deepEqual(kept, moved.slice(1).sort());
  });
});

Deno.test("lmdb validation that hangs is killed and the index rebuilt", async () => {
  await withDir(async (dir) => {
    const chunks = await populated(dir);
    const { store, report } = await CasStore.openWithReport({
      dir,
      maxSize: 1 << 20,
      validatorCommand: ["bash", "-c", "sleep 30"],
      validateTimeoutMs: 200,
    });
    try {
      assert.equal(report.check.status, "damaged");
      assert.match(report.rebuiltBecause ?? "", /timed out/);
      assert.equal(store.stats().chunks, chunks.size);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas survives a writer killed with SIGKILL", async () => {
  await withDir(async (dir) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./testdata/put_forever.ts", import.meta.url).href, dir],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    // Let it write a few hundred chunks (with evictions: 4 MiB holds about 240), then kill it.
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = 0;
    let buf = "";
    while (seen < 400) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      if (lines.length) seen = Number(lines[lines.length - 1]);
    }
    child.kill("SIGKILL");
    await reader.cancel();
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");
    assert.ok(seen >= 400, `writer only got to ${seen}`);

    const { store, report } = await CasStore.openWithReport({ dir, maxSize: 4 << 20 });
    try {
      assert.equal(report.check.status, "ok", JSON.stringify(report.check));
      assert.deepEqual(await listDir(`${dir}/tmp`), []);
      const files = await chunkFilesOnDisk(dir);
      assert.equal(store.stats().chunks, files.size);
      assert.ok(store.stats().bytes <= 4 << 20);
      for (const h of files.keys()) assert.ok(await store.get(h), `chunk ${h} readable`);
    } finally {
      await store.close();
    }
  });
});

Deno.test("cas open prunes file-chunk mappings to chunks that are gone", async () => {
  await withDir(async (dir) => {
    const { checkIndex } = await import("./index_check.ts");
    let store = await CasStore.open({ dir, maxSize: 1 << 20 });
    const a = await store.put(bytesOf(300, 100));
    const b = await store.put(bytesOf(301, 100));
    // More than one prune batch, alternating live and soon-dangling targets.
    for (let i = 0; i < 4500; i++) store.putChunkFor(`f${i}@1:1`, i, i % 2 ? b : a);
    await store.delete(b);
    await store.close();
    const before = await checkIndex(`${dir}/index`);
    assert.equal(before.status === "ok" && before.files, 4500);
    store = await CasStore.open({ dir, maxSize: 1 << 20 });
    await store.close();
    const after = await checkIndex(`${dir}/index`);
    assert.equal(after.status === "ok" && after.files, 2250);
    store = await CasStore.open({ dir, maxSize: 1 << 20 });
    try {
      assert.equal(store.getChunkFor("f0@1:1", 0), a);
      assert.equal(store.getChunkFor("f4498@1:1", 4498), a);
      assert.equal(store.getChunkFor("f1@1:1", 1), null);
    } finally {
      await store.close();
    }
  });
});
