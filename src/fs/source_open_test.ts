import assert from "node:assert/strict";
import { type OpenedSource, SourceOpener, SourceOpenError } from "./source_open.ts";
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

/**
 * Open `path` expecting `hops` thread-pool round trips. Any mount or unmount on the machine (other
 * tests, other processes) makes the opener check its roots again, and the open right after takes
 * the general path: so a few tries, each after `prepare()`.
 */
async function openIn(opener: SourceOpener, path: string, hops: number): Promise<OpenedSource> {
  let got: OpenedSource | undefined;
  for (let i = 0; i < 20; i++) {
    await opener.prepare();
    got = await opener.open(path);
    if (got.hops === hops) return got;
    opener.closeNow(got.fd);
  }
  assert.equal(got?.hops, hops, `${path}: round trips`);
  return got!;
}

/** Whether `fd` is open in this process right now. */
function isOpen(fd: number): boolean {
  try {
    Deno.readLinkSync(`/proc/self/fd/${fd}`);
    return true;
  } catch {
    return false;
  }
}

async function mountTmpfs(path: string): Promise<void> {
  const m = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", path],
    stderr: "piped",
  }).output();
  assert.ok(m.success, new TextDecoder().decode(m.stderr));
}

async function umount(path: string): Promise<void> {
  await new Deno.Command("umount", { args: ["-l", path], stderr: "null" }).output();
}

Deno.test("below a local root a cached open makes no thread-pool round trip, a cold one one", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/Album`);
    await Deno.writeTextFile(`${dir}/Album/a.mp3`, "0123456789");
    const opener = new SourceOpener({ roots: [dir] });
    // Found in the kernel's caches below a local root.
    const src = await openIn(opener, `${dir}/Album/a.mp3`, 0);
    assert.equal(src.size, 10);
    assert.equal(src.realPath, `${dir}/Album/a.mp3`);
    assert.ok(src.nowaitSafe);
    opener.close(src.fd);
    assert.ok(!isOpen(src.fd), "a local file is closed on the loop, at once");

    const pooled = new SourceOpener({ roots: [dir], loopOpens: false });
    // The open on the pool, fstat on the loop.
    const cold = await openIn(pooled, `${dir}/Album/a.mp3`, 1);
    assert.equal(cold.ino, src.ino);
    pooled.close(cold.fd);
    assert.ok(!isOpen(cold.fd));

    // Everything that is not a plain file below the root still takes the general path.
    await Deno.symlink(`${dir}/Album/a.mp3`, `${dir}/link.mp3`);
    const viaLink = await opener.open(`${dir}/link.mp3`);
    assert.ok(viaLink.hops >= 2);
    assert.equal(viaLink.realPath, `${dir}/Album/a.mp3`);
    opener.closeNow(viaLink.fd);
    assert.equal((await fault(opener.open(`${dir}/gone.mp3`))).fault, "missing");
    assert.equal((await fault(opener.open(`${dir}/Album/../../x.mp3`))).fault, "missing");
    opener.dispose();
    pooled.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a root renamed away stops serving through its old fd within 100 ms", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/lib`);
    await Deno.writeTextFile(`${dir}/lib/a.mp3`, "a");
    const opener = new SourceOpener({ roots: [`${dir}/lib`] });
    const a = await openIn(opener, `${dir}/lib/a.mp3`, 0);
    opener.close(a.fd);
    await Deno.rename(`${dir}/lib`, `${dir}/moved`);
    await new Promise((r) => setTimeout(r, 150));
    const e = await fault(opener.open(`${dir}/lib/a.mp3`));
    assert.equal(e.fault, "missing", "answered as the path says, not through the moved folder");
    // Back in place: the loop path comes back once the root is checked again.
    await Deno.rename(`${dir}/moved`, `${dir}/lib`);
    await new Promise((r) => setTimeout(r, 1100));
    const b = await openIn(opener, `${dir}/lib/a.mp3`, 0);
    opener.close(b.fd);
    opener.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a tmpfs root takes the loop path; a mount over it is seen by the next open",
  ignore: Deno.uid() !== 0,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir();
    const lib = `${dir}/lib`;
    await Deno.mkdir(lib);
    await mountTmpfs(lib);
    try {
      await Deno.writeTextFile(`${lib}/a.mp3`, "tmpfs");
      const opener = new SourceOpener({ roots: [lib] });
      const a = await openIn(opener, `${lib}/a.mp3`, 0);
      opener.close(a.fd);
      // Something mounted over the root after its check: the open must not go on through the
      // fd of the covered directory.
      await mountTmpfs(lib);
      try {
        await fault(opener.open(`${lib}/a.mp3`));
        await Deno.writeTextFile(`${lib}/a.mp3`, "over");
        const b = await openIn(opener, `${lib}/a.mp3`, 0); // the new root is local too
        assert.equal(b.size, 4, "the file of the mount on top");
        opener.close(b.fd);
      } finally {
        await umount(lib);
      }
      opener.dispose();
    } finally {
      await umount(lib);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "FUSE sources take the thread pool, as a root or mounted below a local root, even hung",
  ignore: !haveFuse,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir();
    const lib = `${dir}/lib`;
    await Deno.mkdir(`${lib}/Remote`, { recursive: true });
    await Deno.mkdir(`${dir}/fuse`);
    await Deno.writeTextFile(`${lib}/local.mp3`, "local");
    const below = await startDemoServer(`${lib}/Remote`);
    let root: Awaited<ReturnType<typeof startDemoServer>> | undefined;
    try {
      root = await startDemoServer(`${dir}/fuse`);
      const opener = new SourceOpener({ roots: [lib, `${dir}/fuse`], timeoutMs: 400 });
      await opener.prepare();
      const onRoot = await opener.open(`${dir}/fuse/hello.txt`, "fuse");
      assert.ok(onRoot.hops >= 2, `a FUSE root: ${onRoot.hops} hops`);
      assert.ok(!onRoot.nowaitSafe);
      opener.close(onRoot.fd);
      const crossed = await opener.open(`${lib}/Remote/hello.txt`, "lib");
      assert.ok(crossed.hops >= 2, `a FUSE mount below a local root: ${crossed.hops} hops`);
      assert.ok(!crossed.nowaitSafe);
      opener.close(crossed.fd);

      // With the FUSE server stopped, the loop never waits: the local file still opens on the
      // loop, the FUSE one answers EIO by its deadline, and timers keep firing meanwhile.
      below.child.kill("SIGSTOP");
      const local = await openIn(opener, `${lib}/local.mp3`, 0);
      opener.close(local.fd);
      let last = performance.now();
      let gap = 0;
      const tick = setInterval(() => {
        const now = performance.now();
        gap = Math.max(gap, now - last);
        last = now;
      }, 10);
      try {
        const e = await fault(opener.open(`${lib}/Remote/sub/inner.txt`, "remote"));
        assert.equal(e.fault, "timeout");
      } finally {
        clearInterval(tick);
      }
      assert.ok(gap < 1000, `the loop kept running (longest gap ${gap.toFixed(0)} ms)`);
      below.child.kill("SIGCONT");
      for (let i = 0; i < 100 && opener.stuck > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(opener.stuck, 0);
      opener.dispose();
    } finally {
      await below.stop();
      await root?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
