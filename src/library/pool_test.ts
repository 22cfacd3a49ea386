import assert from "node:assert/strict";
import { encodeTrack } from "../../tests/fixtures/mod.ts";
import { ParseCancelledError, ParserPool } from "./pool.ts";
import { readTags } from "./tags.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-pool-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("parse pool answers like readTags, and a file that hangs its worker costs only that file", async () => {
  await withDir(async (dir) => {
    const good: string[] = [];
    for (let i = 0; i < 6; i++) {
      const p = `${dir}/${i}.flac`;
      await Deno.writeFile(p, encodeTrack("flac", { title: `t${i}` }));
      good.push(p);
    }
    // Opening a FIFO for reading blocks until a writer comes: a real, unbounded hang of the
    // worker's synchronous read, like a file on a stalled network mount.
    const fifo = `${dir}/stuck.mp3`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(mk.success, "mkfifo");
    const pool = new ParserPool({ size: 1, timeoutMs: 500 });
    try {
      const paths = [good[0], good[1], fifo, good[2], good[3], good[4], good[5]];
      const results = await Promise.all(paths.map((p) => pool.parse(p)));
      for (const [i, p] of paths.entries()) {
        if (p === fifo) continue;
        assert.deepEqual(results[i], await readTags(p), p);
      }
      const stuck = results[2];
      assert.ok(!stuck.ok && /hung/.test(stuck.reason) && stuck.transient, JSON.stringify(stuck));
      // The first worker, the one that retried the FIFO alone, and one for the rest.
      assert.equal(pool.workersStarted, 3);
      assert.equal(pool.parsed, paths.length);
      assert.equal(pool.pending, 0);
    } finally {
      pool.close();
    }
  });
});

Deno.test("parse pool stops spending workers when several hang in a row", async () => {
  await withDir(async (dir) => {
    const paths: string[] = [];
    for (let i = 0; i < 3; i++) {
      const p = `${dir}/stuck${i}.mp3`;
      assert.ok((await new Deno.Command("mkfifo", { args: [p] }).output()).success, "mkfifo");
      paths.push(p);
    }
    await Deno.writeFile(`${dir}/good.flac`, encodeTrack("flac", { title: "good" }));
    paths.push(`${dir}/good.flac`);
    const pool = new ParserPool({ size: 1, timeoutMs: 300 });
    try {
      const results = await Promise.all(paths.map((p) => pool.parse(p)));
      assert.ok(results.every((r) => !r.ok && r.transient), JSON.stringify(results));
      assert.match(!results[3].ok ? results[3].reason : "", /stalled/);
      // The first FIFO twice (alone the second time), the second once: then it stops.
      assert.equal(pool.workersStarted, 3);
      const later = await pool.parse(`${dir}/good.flac`);
      assert.ok(!later.ok && /stalled/.test(later.reason), "still stalled for a while");
    } finally {
      pool.close();
    }
  });
});

Deno.test("parse pool close rejects what is still queued", async () => {
  await withDir(async (dir) => {
    const p = `${dir}/a.opus`;
    await Deno.writeFile(p, encodeTrack("opus", { title: "a" }));
    const pool = new ParserPool({ size: 1 });
    const pending = Array.from({ length: 50 }, () => pool.parse(p));
    pool.close();
    const settled = await Promise.allSettled(pending);
    assert.ok(
      settled.every((s) => s.status === "rejected" && s.reason instanceof ParseCancelledError),
    );
    await assert.rejects(() => pool.parse(p), ParseCancelledError);
  });
});

Deno.test("parse pool keeps every answer with its file through a long queue, read-ahead or not", async () => {
  await withDir(async (dir) => {
    const files: string[] = [];
    for (let i = 0; i < 5; i++) {
      const p = `${dir}/${i}.opus`;
      await Deno.writeFile(p, encodeTrack("opus", { title: `t${i}` }));
      files.push(p);
    }
    const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
    // With and without the workers' read-ahead: the same answers, and no fd left open.
    for (const readAhead of [16, 0]) {
      const pool = new ParserPool({ size: 2, readAhead });
      try {
        // Both workers started, and each has read ahead once (their runtimes hold fds too).
        await Promise.all(Array.from({ length: 200 }, (_, i) => pool.parse(files[i % 5])));
        await new Promise((r) => setTimeout(r, 300));
        const before = fds();
        // Queued at once, past the queue's compaction point (1024 taken), as a first scan does.
        const paths = Array.from({ length: 3000 }, (_, i) => files[(i * 7) % files.length]);
        const results = await Promise.all(paths.map((p) => pool.parse(p)));
        results.forEach((r, i) => {
          assert.ok(r.ok, paths[i]);
          assert.equal(r.tags.title, `t${(i * 7) % files.length}`);
        });
        assert.equal(pool.pending, 0);
        await new Promise((r) => setTimeout(r, 300));
        assert.ok(
          fds() <= before,
          `fds: ${before} before, ${fds()} after (readAhead ${readAhead})`,
        );
      } finally {
        pool.close();
      }
    }
  });
});
