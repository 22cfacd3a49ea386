import assert from "node:assert/strict";
import { SourceOpener, SourceOpenError } from "./source_open.ts";
import { preadSync } from "../fuse/mod.ts";
import { startDemoServer } from "../../tests/support/demo_server.ts";

async function tempDir(): Promise<string> {
  return await Deno.realPath(await Deno.makeTempDir({ prefix: "musicfs-source-open-" }));
}

async function fault(p: Promise<unknown>): Promise<SourceOpenError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SourceOpenError, String(e));
    return e;
  }
  throw new Error("the open succeeded");
}

Deno.test("a regular file opens with its size, times and inode; reads give its bytes", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.mp3`, "0123456789");
    const opener = new SourceOpener({ roots: [dir] });
    const src = await opener.open(`${dir}/a.mp3`);
    try {
      const st = await Deno.stat(`${dir}/a.mp3`);
      assert.equal(src.size, 10);
      assert.equal(src.mtimeMs, st.mtime!.getTime());
      assert.equal(src.ctimeMs, st.ctime!.getTime());
      assert.equal(src.ino, st.ino);
      assert.equal(src.realPath, `${dir}/a.mp3`);
      assert.ok(src.nowaitSafe, "a local filesystem allows page-cache reads on the loop");
      const buf = new Uint8Array(4);
      assert.equal(preadSync(src.fd, buf, 3), 4);
      assert.equal(new TextDecoder().decode(buf), "3456");
    } finally {
      opener.closeNow(src.fd);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a FIFO, a socket and a directory get EIO at once, without blocking", async () => {
  const dir = await tempDir();
  const listener = Deno.listen({ transport: "unix", path: `${dir}/sock.mp3` });
  try {
    const mk = await new Deno.Command("mkfifo", { args: [`${dir}/fifo.mp3`] }).output();
    assert.ok(mk.success);
    await Deno.mkdir(`${dir}/dir.mp3`);
    const opener = new SourceOpener({ roots: [dir], timeoutMs: 5000 });
    for (const name of ["fifo.mp3", "sock.mp3", "dir.mp3"]) {
      const t0 = performance.now();
      const e = await fault(opener.open(`${dir}/${name}`));
      assert.ok(performance.now() - t0 < 1000, `${name} answered in time`);
      assert.equal(e.fault, "not-regular", `${name}: ${e.message}`);
      assert.equal(e.errno, 5);
      assert.ok(e.libraryChanged);
    }
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("symlinks are followed only into a library root, or with followSymlinks", async () => {
  const dir = await tempDir();
  const outside = await tempDir();
  try {
    await Deno.mkdir(`${dir}/lib/Album`, { recursive: true });
    await Deno.writeTextFile(`${dir}/lib/Album/real.mp3`, "inside");
    await Deno.writeTextFile(`${outside}/secret`, "secret");
    await Deno.symlink(`${dir}/lib/Album/real.mp3`, `${dir}/lib/in.mp3`);
    await Deno.symlink(`${outside}/secret`, `${dir}/lib/out.mp3`);
    await Deno.symlink(outside, `${dir}/lib/OutDir`);
    await Deno.copyFile(`${outside}/secret`, `${outside}/t.mp3`);
    await Deno.symlink("self.mp3", `${dir}/lib/self.mp3`);
    const lib = `${dir}/lib`;
    const opener = new SourceOpener({ roots: [lib] });
    const ok = await opener.open(`${lib}/in.mp3`);
    assert.equal(ok.realPath, `${lib}/Album/real.mp3`);
    opener.closeNow(ok.fd);
    const out = await fault(opener.open(`${lib}/out.mp3`));
    assert.equal(out.fault, "symlink-outside");
    assert.equal(out.errno, 5);
    // A directory component that leads out: caught by where the fd really points.
    const viaDir = await fault(opener.open(`${lib}/OutDir/t.mp3`));
    assert.equal(viaDir.fault, "outside-root");
    const loop = await fault(opener.open(`${lib}/self.mp3`));
    assert.equal(loop.errno, 5);
    const missing = await fault(opener.open(`${lib}/gone.mp3`));
    assert.equal(missing.fault, "missing");
    assert.equal(missing.errno, 2);

    const follow = new SourceOpener({ roots: [lib], followSymlinks: true });
    const o1 = await follow.open(`${lib}/out.mp3`);
    assert.equal(o1.size, 6);
    follow.closeNow(o1.fd);
    const o2 = await follow.open(`${lib}/OutDir/t.mp3`);
    follow.closeNow(o2.fd);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

const haveFuse = await Deno.stat("/dev/fuse").then(() => Deno.uid() === 0, () => false);
if (!haveFuse) {
  console.warn("SKIPPED: source_open hung-source test needs /dev/fuse and root");
}

Deno.test({
  name: "an open of a hung source answers EIO by its deadline; later opens fail at once",
  ignore: !haveFuse,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const mp = await Deno.makeTempDir({ prefix: "musicfs-hung-" });
    const server = await startDemoServer(mp);
    const child = server.child;
    try {
      const opener = new SourceOpener({ roots: [mp], timeoutMs: 400 });
      // A FUSE source: page-cache-only reads are not safe on the request loop.
      const live = await opener.open(`${mp}/hello.txt`, "demo");
      assert.ok(!live.nowaitSafe);
      opener.closeNow(live.fd);
      child.kill("SIGSTOP");
      const t0 = performance.now();
      const e = await fault(opener.open(`${mp}/hello.txt`, "demo"));
      const took = performance.now() - t0;
      assert.equal(e.fault, "timeout");
      assert.ok(took < 2000, `answered in ${took} ms`);
      assert.equal(opener.stuck, 1);
      const t1 = performance.now();
      const again = await fault(opener.open(`${mp}/sub/inner.txt`, "demo"));
      assert.equal(again.fault, "stuck");
      assert.ok(performance.now() - t1 < 100, "a stuck library fails the next open at once");
      child.kill("SIGCONT");
      for (let i = 0; i < 100 && opener.stuck > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(opener.stuck, 0, "the stuck open returned and its fd was closed");
    } finally {
      await server.stop();
      await Deno.remove(mp).catch(() => {});
    }
  },
});
