/**
 * The FUSE layer through real kernel mounts: the demo filesystem driven with ordinary tools
 * and Deno's async file APIs (never sync ones: they would block our own request loop).
 */
import assert from "node:assert/strict";
import {
  DemoFs,
  findFuseMount,
  FuseSession,
  isDeadMount,
  MountError,
  type SessionOptions,
} from "../src/fuse/mod.ts";
import {
  getXattr,
  isMounted,
  listXattr,
  needsFuse,
  randomBytes,
  run,
  tempDir,
  waitFor,
} from "./support/helpers.ts";
import {
  asUser,
  denoFor,
  existingUser,
  privateDirFor,
  type TestUser,
} from "./support/other_user.ts";

async function withMount(
  fs: DemoFs,
  opts: SessionOptions,
  fn: (mnt: string, s: FuseSession, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  const mnt = `${dir.path}/mnt`;
  await Deno.mkdir(mnt);
  const s = await FuseSession.mount(mnt, fs, opts);
  try {
    await fn(mnt, s, dir.path);
  } finally {
    await s.unmount();
    fs.closeAll();
    await dir.cleanup();
  }
}

async function readAt(path: string, offset: number, length: number): Promise<Uint8Array> {
  const f = await Deno.open(path);
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    const out = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const n = await f.read(out.subarray(got));
      if (n === null) break;
      got += n;
    }
    return out.subarray(0, got);
  } finally {
    f.close();
  }
}

Deno.test(
  "fuse: lookup, getattr, readdir, read and readlink through the kernel",
  needsFuse,
  async () => {
    const fs = new DemoFs();
    fs.addFile("hello.txt", "hello world\n");
    fs.addSymlink("link", "hello.txt");
    fs.addDir("empty");
    await withMount(fs, {}, async (mnt) => {
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello world\n");
      const st = await Deno.stat(`${mnt}/hello.txt`);
      assert.equal(st.size, 12);
      assert.equal(st.mode! & 0o777, 0o444);
      assert.ok(st.isFile);
      assert.equal(await Deno.readLink(`${mnt}/link`), "hello.txt");
      assert.equal(await Deno.readTextFile(`${mnt}/link`), "hello world\n");
      assert.ok((await Deno.lstat(`${mnt}/link`)).isSymlink);
      assert.ok((await Deno.stat(`${mnt}/empty`)).isDirectory);
      const names = [];
      for await (const e of Deno.readDir(mnt)) names.push(e.name);
      assert.deepEqual(names.sort(), ["empty", "hello.txt", "link"]);
      await assert.rejects(Deno.stat(`${mnt}/missing`), Deno.errors.NotFound);
      const ls = await run(["ls", "-a", mnt]);
      assert.deepEqual(ls.stdout.trim().split("\n"), [".", "..", "empty", "hello.txt", "link"]);
    });
  },
);

Deno.test(
  "fuse: a 10k-entry directory lists completely across readdir pages",
  needsFuse,
  async () => {
    const fs = new DemoFs();
    const expected = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const name = `track-${String(i).padStart(5, "0")}-${"é".repeat(i % 7)}.mp3`;
      fs.addFile(`big/${name}`, String(i));
      expected.add(name);
    }
    await withMount(fs, {}, async (mnt) => {
      const seen = new Set<string>();
      for await (const e of Deno.readDir(`${mnt}/big`)) {
        assert.ok(!seen.has(e.name), `duplicate entry ${e.name}`);
        seen.add(e.name);
      }
      assert.equal(seen.size, 10_000);
      assert.deepEqual([...seen].sort(), [...expected].sort());
      const ls = await run(["sh", "-c", `ls -f '${mnt}/big' | wc -l`]);
      assert.equal(Number(ls.stdout.trim()), 10_002); // plus . and ..
      const stat = await run(["sh", "-c", `ls -l '${mnt}/big' | tail -n +2 | wc -l`]);
      assert.equal(Number(stat.stdout.trim()), 10_000);
      assert.equal(
        await Deno.readTextFile(`${mnt}/big/track-09999-${"é".repeat(9999 % 7)}.mp3`),
        "9999",
      );
    });
  },
);

for (const passthrough of [true, false]) {
  Deno.test(
    `fuse: reads at odd offsets and across 1 MiB boundaries match the source (passthrough ${passthrough})`,
    needsFuse,
    async () => {
      const dir = await tempDir();
      try {
        const data = randomBytes(3 * 1024 * 1024 + 123, 7);
        const src = `${dir.path}/source.bin`;
        await Deno.writeFile(src, data);
        const fs = new DemoFs();
        fs.addSource("file.bin", src);
        fs.addFile("mem.bin", data);
        await withMount(fs, { passthrough }, async (mnt, s) => {
          assert.equal(s.passthrough, passthrough);
          for (const name of ["file.bin", "mem.bin"]) {
            const whole = await Deno.readFile(`${mnt}/${name}`);
            assert.equal(whole.length, data.length);
            assert.ok(whole.every((b, i) => b === data[i]), `${name} whole-file bytes differ`);
            const MiB = 1 << 20;
            for (
              const off of [
                0,
                1,
                4095,
                4097,
                MiB - 7,
                MiB,
                2 * MiB - 1,
                data.length - 3,
                data.length,
              ]
            ) {
              for (const len of [1, 13, 65_537, MiB + 9]) {
                const got = await readAt(`${mnt}/${name}`, off, len);
                const want = data.subarray(off, off + len);
                assert.equal(got.length, want.length, `${name} length at ${off}+${len}`);
                assert.ok(got.every((b, i) => b === want[i]), `${name} bytes at ${off}+${len}`);
              }
            }
          }
        });
      } finally {
        await dir.cleanup();
      }
    },
  );
}

Deno.test("fuse: passthrough and classic reads give identical bytes", needsFuse, async () => {
  const dir = await tempDir();
  try {
    const data = randomBytes(5 * 1024 * 1024 + 17, 3);
    await Deno.writeFile(`${dir.path}/src.bin`, data);
    const digests: string[] = [];
    for (const passthrough of [true, false]) {
      const fs = new DemoFs();
      fs.addSource("f.bin", `${dir.path}/src.bin`);
      await withMount(fs, { passthrough }, async (mnt) => {
        const out = await run(["sha256sum", `${mnt}/f.bin`]);
        digests.push(out.stdout.split(" ")[0]);
      });
    }
    const direct = (await run(["sha256sum", `${dir.path}/src.bin`])).stdout.split(" ")[0];
    assert.deepEqual(digests, [direct, direct]);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("fuse: statfs and extended attributes", needsFuse, async () => {
  const fs = new DemoFs();
  const ino = fs.addFile("a.txt", "x".repeat(10_000));
  fs.setXattr(ino, "user.musicfs.origin", "/music/a.flac");
  fs.setXattr(ino, "user.other", "1");
  await withMount(fs, {}, async (mnt) => {
    const out = await run(["stat", "-f", "-c", "%b %S %l %c", mnt]);
    assert.equal(out.code, 0, out.stderr);
    const [blocks, bsize, namelen, files] = out.stdout.trim().split(" ").map(Number);
    assert.equal(bsize, 4096);
    assert.equal(namelen, 255);
    assert.equal(blocks, Math.ceil(10_000 / 4096));
    assert.equal(files, 2);
    assert.equal(await getXattr(`${mnt}/a.txt`, "user.musicfs.origin"), "/music/a.flac");
    assert.equal(await getXattr(`${mnt}/a.txt`, "user.missing"), null);
    assert.deepEqual((await listXattr(`${mnt}/a.txt`)).sort(), [
      "user.musicfs.origin",
      "user.other",
    ]);
  });
});

Deno.test("fuse: every write operation fails with EROFS", needsFuse, async () => {
  const fs = new DemoFs();
  fs.addFile("a.txt", "a");
  fs.addDir("d");
  await withMount(fs, {}, async (mnt) => {
    const erofs = (e: unknown) => (e as { code?: string }).code === "EROFS";
    await assert.rejects(Deno.writeTextFile(`${mnt}/new.txt`, "x"), erofs);
    await assert.rejects(Deno.writeTextFile(`${mnt}/a.txt`, "x"), erofs);
    await assert.rejects(Deno.open(`${mnt}/a.txt`, { write: true }), erofs);
    await assert.rejects(Deno.mkdir(`${mnt}/newdir`), erofs);
    await assert.rejects(Deno.rename(`${mnt}/a.txt`, `${mnt}/b.txt`), erofs);
    await assert.rejects(Deno.remove(`${mnt}/a.txt`), erofs);
    await assert.rejects(Deno.remove(`${mnt}/d`), erofs);
    await assert.rejects(Deno.chmod(`${mnt}/a.txt`, 0o666), erofs);
    await assert.rejects(Deno.symlink("a.txt", `${mnt}/l`), erofs);
    const touch = await run(["touch", `${mnt}/a.txt`]);
    assert.match(touch.stderr, /Read-only file system/);
    assert.equal(await Deno.readTextFile(`${mnt}/a.txt`), "a");
  });
});

Deno.test("fuse: 32 concurrent readers get the right bytes", needsFuse, async () => {
  const dir = await tempDir();
  try {
    const fs = new DemoFs();
    const want: string[] = [];
    for (let i = 0; i < 32; i++) {
      const data = randomBytes(512 * 1024 + i * 1001, i + 1);
      await Deno.writeFile(`${dir.path}/s${i}`, data);
      if (i % 2) fs.addSource(`f${i}`, `${dir.path}/s${i}`);
      else fs.addFile(`f${i}`, data);
      want.push((await run(["sha256sum", `${dir.path}/s${i}`])).stdout.split(" ")[0]);
    }
    // Readers are other processes, as in real use: each streams its file in 4 KiB reads.
    await withMount(fs, { passthrough: false }, async (mnt) => {
      const got = await Promise.all(
        want.map((_, i) => run(["sh", "-c", `dd if='${mnt}/f${i}' bs=4k status=none | sha256sum`])),
      );
      got.forEach((r, i) => assert.equal(r.stdout.split(" ")[0], want[i], `reader ${i}`));
    });
  } finally {
    await dir.cleanup();
  }
});

Deno.test(
  "fuse: the request loop keeps answering while Deno's blocking pool is saturated",
  needsFuse,
  async () => {
    const fs = new DemoFs();
    fs.addFile("a.txt", "a");
    const hog = Deno.dlopen("libc.so.6", {
      usleep: { parameters: ["u32"], result: "i32", nonblocking: true },
    });
    await withMount(fs, {}, async (mnt) => {
      // 40 pool threads sleeping 3 s: a pooled wait for /dev/fuse would not run until they end.
      const busy = Promise.all(Array.from({ length: 40 }, () => hog.symbols.usleep(3_000_000)));
      const reader = run(["cat", `${mnt}/a.txt`]);
      const first = await Promise.race([reader.then(() => "reader"), busy.then(() => "pool")]);
      assert.equal(first, "reader", "the read had to wait for the pool to drain");
      assert.equal((await reader).stdout, "a");
      await busy;
    });
    hog.close();
  },
);

Deno.test("fuse: a handler that throws answers EIO to that request only", needsFuse, async () => {
  const fs = new DemoFs();
  const bad = fs.addFile("bad.txt", "never");
  fs.addFile("good.txt", "fine");
  fs.injectFault(bad, "throw");
  await withMount(fs, {}, async (mnt, s) => {
    await assert.rejects(
      Deno.readFile(`${mnt}/bad.txt`),
      (e: Error) => /Input\/output error|os error 5/.test(e.message),
    );
    assert.equal(await Deno.readTextFile(`${mnt}/good.txt`), "fine");
    assert.ok(s.stats.errors >= 1);
  });
});

Deno.test("fuse: a hanging handler does not block other requests", needsFuse, async () => {
  const fs = new DemoFs();
  const slow = fs.addFile("slow.txt", "slow");
  fs.addFile("fast.txt", "fast");
  fs.injectFault(slow, "hang");
  await withMount(fs, {}, async (mnt, s) => {
    const hung = Deno.readFile(`${mnt}/slow.txt`).then(() => "read", (e) => `failed: ${e.message}`);
    await waitFor(() => s.stats.inflight >= 1, 5000, "the hung read to arrive");
    for (let i = 0; i < 20; i++) assert.equal(await Deno.readTextFile(`${mnt}/fast.txt`), "fast");
    const names = [];
    for await (const e of Deno.readDir(mnt)) names.push(e.name);
    assert.equal(names.length, 2);
    fs.releaseHung();
    assert.match(await hung, /failed: .*(Input\/output|os error 5)/);
  });
});

Deno.test("fuse: an interrupted request is answered EINTR and forgotten", needsFuse, async () => {
  const fs = new DemoFs();
  fs.injectFault(fs.addFile("slow.txt", "slow"), "hang");
  await withMount(fs, {}, async (mnt, s) => {
    const child = new Deno.Command("cat", {
      args: [`${mnt}/slow.txt`],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitFor(() => s.stats.inflight >= 1, 5000, "the read to arrive");
    child.kill("SIGKILL");
    await child.status;
    await waitFor(() => s.stats.inflight === 0, 5000, "the interrupted request to be dropped");
  });
});

Deno.test(
  "fuse: unmount while a reader is blocked ends the reader and the session",
  needsFuse,
  async () => {
    const fs = new DemoFs();
    fs.injectFault(fs.addFile("slow.txt", "slow"), "hang");
    const dir = await tempDir();
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    const s = await FuseSession.mount(mnt, fs);
    try {
      const reader = Deno.readFile(`${mnt}/slow.txt`).then(
        () => "read",
        (e) => `failed: ${e.message}`,
      );
      await waitFor(() => s.stats.inflight >= 1, 5000, "the blocked read");
      await s.unmount();
      assert.match(await reader, /^failed/);
      assert.equal(await isMounted(mnt), false);
    } finally {
      await s.unmount();
      fs.releaseHung();
      await dir.cleanup();
    }
  },
);

Deno.test("fuse: kernel cache invalidation makes a changed tree visible", needsFuse, async () => {
  const fs = new DemoFs();
  fs.addFile("a.txt", "a");
  // Long TTLs: without notifications the kernel would keep answering from its cache.
  await withMount(fs, { entryTtlMs: 3_600_000, attrTtlMs: 3_600_000 }, async (mnt, s) => {
    await assert.rejects(Deno.stat(`${mnt}/b.txt`), Deno.errors.NotFound);
    fs.addFile("b.txt", "b");
    s.notifyInvalEntry(1, "b.txt");
    s.notifyInvalInode(1);
    await s.flushNotifications();
    assert.equal(await Deno.readTextFile(`${mnt}/b.txt`), "b");
    const names = [];
    for await (const e of Deno.readDir(mnt)) names.push(e.name);
    assert.deepEqual(names.sort(), ["a.txt", "b.txt"]);
  });
});

Deno.test("fuse: mountpoint problems give one-line errors", needsFuse, async () => {
  const dir = await tempDir();
  try {
    const fs = new DemoFs();
    await assert.rejects(
      FuseSession.mount(`${dir.path}/missing`, fs),
      (e: Error) => e instanceof MountError && /no such directory/.test(e.message),
    );
    await Deno.writeTextFile(`${dir.path}/file`, "x");
    await assert.rejects(FuseSession.mount(`${dir.path}/file`, fs), /not a directory/);
    await Deno.mkdir(`${dir.path}/full`);
    await Deno.writeTextFile(`${dir.path}/full/x`, "x");
    await assert.rejects(FuseSession.mount(`${dir.path}/full`, fs), /not empty/);
    // A live mount of someone else is refused, not stolen.
    await Deno.mkdir(`${dir.path}/busy`);
    const other = await FuseSession.mount(`${dir.path}/busy`, new DemoFs());
    try {
      // Refused either way; under load the probe may time out before the other mount answers.
      await assert.rejects(
        FuseSession.mount(`${dir.path}/busy`, fs),
        /another FUSE filesystem|does not answer/,
      );
    } finally {
      await other.unmount();
    }
    const created = await FuseSession.mount(`${dir.path}/new/deeper`, fs, { create: true });
    await created.unmount();
    for (const e of [`${dir.path}/missing`]) assert.equal(await isMounted(e), false);
  } finally {
    await dir.cleanup();
  }
});

/** How to run the demo child as another user, inside a private mount namespace. */
interface OtherUserRun {
  user: TestUser;
  /** A deno the user can run. */
  deno: string;
  /** A copy of what the demo child needs, readable by the user. */
  checkout: string;
  /** The user's own home and DENO_DIR. */
  home: string;
  /** Prefix that enters the private mount namespace. */
  enter: string[];
}

function spawnDemo(mnt: string, extra: string[] = [], other?: OtherUserRun): Deno.ChildProcess {
  const base = other ? `file://${other.checkout}/` : import.meta.url;
  const script = new URL(other ? "tests/support/demo_mount.ts" : "./support/demo_mount.ts", base)
    .pathname;
  const config = new URL(other ? "deno.json" : "../deno.json", base).pathname;
  const deno = [
    other?.deno ?? Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    `--config=${config}`,
    script,
    mnt,
    ...extra,
  ];
  const cmd = other ? [...other.enter, ...asUser(other.user), ...deno] : deno;
  return new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    // Not ours: the test's cwd may be a checkout that user cannot enter.
    cwd: other?.home,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    clearEnv: other !== undefined,
    env: other
      ? {
        DENO_DIR: `${other.home}/deno`,
        HOME: other.home,
        XDG_RUNTIME_DIR: other.home,
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      }
      : undefined,
  }).spawn();
}

async function readLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
  } finally {
    reader.releaseLock();
  }
  return text.trim();
}

Deno.test(
  "fuse: a dead mount left by a SIGKILLed daemon is detached and mounted again",
  needsFuse,
  async () => {
    const dir = await tempDir();
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    const child = spawnDemo(mnt);
    try {
      assert.equal(await readLine(child.stdout), "ready kernel");
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello from the demo filesystem\n");
      child.kill("SIGKILL");
      await child.status;
      assert.ok(await isMounted(mnt), "the dead mount should still be there");
      await assert.rejects(
        Deno.readTextFile(`${mnt}/sub/inner.txt`),
        (e: Error) => /not connected|os error 107/.test(e.message),
      );
      assert.ok(await isDeadMount(mnt));
      const fs = new DemoFs();
      fs.addFile("again.txt", "again");
      const s = await FuseSession.mount(mnt, fs);
      try {
        assert.equal(await Deno.readTextFile(`${mnt}/again.txt`), "again");
      } finally {
        await s.unmount();
      }
      assert.equal(await isMounted(mnt), false);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.stderr.cancel().catch(() => {});
      await child.stdout.cancel().catch(() => {});
      await dir.cleanup();
    }
  },
);

/**
 * A copy, under `dir`, of what the demo child needs (src/, deno.json, the script and the npm
 * packages src/fuse imports), readable by anyone: the checkout itself may sit in a 0700
 * directory the other user cannot enter.
 */
async function demoCheckout(dir: string): Promise<string> {
  const root = new URL("../", import.meta.url).pathname;
  const out = await Deno.makeTempDir({ dir, prefix: "checkout-" });
  await Deno.chmod(out, 0o755);
  await Deno.mkdir(`${out}/tests/support`, { recursive: true, mode: 0o755 });
  await Deno.mkdir(`${out}/node_modules`, { mode: 0o755 });
  const copies = [
    ["src", "src"],
    ["deno.json", "deno.json"],
    ["tests/support/demo_mount.ts", "tests/support/demo_mount.ts"],
    ["node_modules/@logtape", "node_modules/@logtape"],
  ];
  for (const [from, to] of copies) {
    // -L: node_modules may be a link to a shared one; the copy holds the files themselves.
    const r = await run(["cp", "-RL", `${root}${from}`, `${out}/${to}`]);
    if (r.code !== 0) throw new Error(`cp ${from}: ${r.stderr.trim()}`);
  }
  await run(["chmod", "-R", "a+rX", out]);
  return out;
}

/**
 * A mount namespace of our own whose /dev/fuse is a fresh 0666 node of the same device, so a
 * non-root user can mount without /dev/fuse being widened for the whole machine (some
 * sandboxes ship it 0600). It lives as long as its holder process; `enter` runs a command in
 * it. Mounts made inside it are invisible outside and vanish with it.
 */
async function privateFuseNamespace(dir: string) {
  const rdev = (await Deno.stat("/dev/fuse")).rdev!;
  const major = (rdev >> 8) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  const devDir = await Deno.makeTempDir({ dir, prefix: "dev-" });
  const holder = new Deno.Command("unshare", {
    args: [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t tmpfs -o mode=0755,size=64k musicfs-test-dev "$0" && ` +
      `mknod -m 0666 "$0/fuse" c ${major} ${minor} && mount --bind "$0/fuse" /dev/fuse && ` +
      `echo ready && exec sleep 3600`,
      devDir,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const line = await readLine(holder.stdout);
  if (line !== "ready") {
    holder.kill("SIGKILL");
    const err = await new Response(holder.stderr).text();
    throw new Error(`Cannot make a private mount namespace: ${err.trim() || line}`);
  }
  return {
    pid: holder.pid,
    enter: ["nsenter", `--target=${holder.pid}`, "--mount", "--"],
    /** The mounts inside the namespace. */
    mounts: () => Deno.readTextFile(`/proc/${holder.pid}/mounts`),
    async close() {
      try {
        holder.kill("SIGKILL");
      } catch { /* gone */ }
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
      await holder.stderr.cancel().catch(() => {});
    },
  };
}

Deno.test(
  "fuse: a non-root user mounts through fusermount3; after a SIGKILL the next mount clears the dead one (own mount namespace and /dev/fuse node: nothing machine-wide changes)",
  {
    ...needsFuse,
    ignore: needsFuse.ignore || Deno.uid() !== 0,
  },
  async () => {
    const dir = await tempDir();
    let ns: Awaited<ReturnType<typeof privateFuseNamespace>> | undefined;
    try {
      // Others may pass through our temp dir to what we hand them, not list it.
      await Deno.chmod(dir.path, 0o711);
      const user = await existingUser("nobody");
      const mnt = await privateDirFor(user, dir.path, "mnt-");
      const other: OtherUserRun = {
        user,
        deno: await denoFor(user, dir.path),
        checkout: await demoCheckout(dir.path),
        home: await privateDirFor(user, dir.path, "home-"),
        enter: [],
      };
      ns = await privateFuseNamespace(dir.path);
      other.enter = ns.enter;
      await nonRootRounds(mnt, other, ns);
    } finally {
      // Killing the holder ends the namespace and any mount left in it.
      await ns?.close();
      await dir.cleanup();
    }
  },
);

async function nonRootRounds(
  mnt: string,
  other: OtherUserRun,
  ns: { enter: string[]; mounts(): Promise<string> },
): Promise<void> {
  const { uid } = other.user;
  const inNs = (cmd: string[]) => run([...ns.enter, ...cmd]);
  const isMountedInNs = async () =>
    (await ns.mounts()).split("\n").some((l) => l.split(" ")[1] === mnt);
  // Round "kill" leaves a dead mount (the helper's auto_unmount cannot see it die: it probes
  // as setuid root, which a mount without allow_other refuses); "restart" must clear it.
  for (const round of ["clean", "kill", "restart"]) {
    const child = spawnDemo(mnt, [], other);
    try {
      const line = await readLine(child.stdout);
      if (line !== "ready helper") {
        const err = await new Response(child.stderr).text();
        assert.fail(`child said ${JSON.stringify(line)}: ${err}`);
      }
      assert.ok(await isMountedInNs());
      assert.ok(!(await isMounted(mnt)), "the mount stays inside the private namespace");
      assert.match(
        await ns.mounts(),
        new RegExp(`${mnt} fuse.musicfs ro,nosuid,nodev.*user_id=${uid}`),
      );
      // Without allow_other only the mounting user may look inside, so read as that user.
      const cat = await inNs([...asUser(other.user), "cat", `${mnt}/sub/inner.txt`]);
      assert.equal(cat.stdout, "inner\n", cat.stderr);
      const rootCat = await inNs(["cat", `${mnt}/sub/inner.txt`]);
      assert.match(rootCat.stderr, /Permission denied/);
      if (round === "kill") {
        child.kill("SIGKILL");
        await child.status;
        continue;
      }
      await child.stdin.close();
      assert.equal((await child.status).code, 0);
      await waitFor(async () => !(await isMountedInNs()), 10_000, `the ${round} unmount`);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
    }
  }
}

/**
 * read_ahead_kb of the machine's block devices (major number not 0). Anonymous devices (0:N)
 * belong to single mounts (FUSE, NFS...) that come and go with the tests running beside us.
 */
async function blockReadaheads(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir("/sys/class/bdi")) {
    if (e.name.startsWith("0:")) continue;
    const v = await Deno.readTextFile(`/sys/class/bdi/${e.name}/read_ahead_kb`).catch(() => "");
    out.set(e.name, v.trim());
  }
  return out;
}

/** Block devices present in both snapshots whose readahead differs (loop devices come and go). */
function changedReadaheads(a: Map<string, string>, b: Map<string, string>): string[] {
  return [...a].filter(([k, v]) => b.has(k) && b.get(k) !== v).map(([k]) => k);
}

/** Whether a mount of device `dev` (`major:minor`) is in /proc/self/mountinfo. */
async function deviceMounted(dev: string): Promise<boolean> {
  const info = await Deno.readTextFile("/proc/self/mountinfo");
  return info.split("\n").some((l) => l.split(" ")[2] === dev);
}

Deno.test(
  "fuse: the readahead a session raises is its own mount's and goes away with it (no machine-wide change)",
  { ...needsFuse, ignore: needsFuse.ignore || Deno.uid() !== 0 },
  async () => {
    const fs = new DemoFs();
    fs.addFile("a.txt", "a");
    const before = await blockReadaheads();
    let dev = "";
    await withMount(fs, {}, async (mnt) => {
      dev = findFuseMount(mnt)!.device;
      assert.match(dev, /^0:\d+$/, "a FUSE connection is an anonymous device of its own");
      await waitFor(
        async () =>
          (await Deno.readTextFile(`/sys/class/bdi/${dev}/read_ahead_kb`)).trim() === "1024",
        5000,
        "the mount's readahead to be raised",
      );
      assert.deepEqual(changedReadaheads(before, await blockReadaheads()), []);
    });
    // Gone with the mount (unless another test's new mount got the same number meanwhile).
    if (!(await deviceMounted(dev))) {
      await assert.rejects(Deno.stat(`/sys/class/bdi/${dev}`), Deno.errors.NotFound);
    }
    assert.deepEqual(changedReadaheads(before, await blockReadaheads()), []);
  },
);

Deno.test(
  "fuse: the reader thread answers GETATTR from shared attributes; an invalidation sends it back to the main thread",
  needsFuse,
  async () => {
    const fs = new DemoFs();
    const ino = fs.addFile("dir/song.flac", "x".repeat(12345));
    await withMount(fs, { entryTtlMs: 60_000, attrTtlMs: 0 }, async (mnt, s) => {
      const stat = async () => {
        const r = await run(["stat", "-c", "%s %a %i", `${mnt}/dir/song.flac`]);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trim();
      };
      const want = `12345 444 ${ino}`;
      assert.equal(await stat(), want); // LOOKUP on the main thread shares the attributes
      const before = s.stats.answeredByReader;
      for (let i = 0; i < 5; i++) assert.equal(await stat(), want);
      assert.ok(
        s.stats.answeredByReader >= before + 5,
        `reader answered ${s.stats.answeredByReader}`,
      );
      s.notifyInvalInode(ino);
      await s.flushNotifications();
      const afterInval = s.stats.answeredByReader;
      assert.equal(await stat(), want);
      assert.equal(
        s.stats.answeredByReader,
        afterInval,
        "the main thread answered after the invalidation",
      );
      assert.equal(await stat(), want);
      assert.equal(s.stats.answeredByReader, afterInval + 1, "shared again");
    });
  },
);

Deno.test(
  "fuse: with cached listings, directories open without a request and a listing is read once until invalidated",
  needsFuse,
  async () => {
    const fs = new DemoFs();
    for (let i = 0; i < 500; i++) fs.addFile(`d/${i}.flac`, "x");
    const opts = { cacheDirs: true, entryTtlMs: 3_600_000, attrTtlMs: 3_600_000 };
    await withMount(fs, opts, async (mnt, s) => {
      const list = async () => {
        const names = [];
        for await (const e of Deno.readDir(`${mnt}/d`)) names.push(e.name);
        return names.sort();
      };
      assert.equal((await list()).length, 500);
      const before = s.stats.requests;
      for (let i = 0; i < 3; i++) assert.equal((await list()).length, 500);
      assert.equal(s.stats.requests, before, "no OPENDIR, READDIR or RELEASEDIR once cached");
      const ino = fs.addFile("d/new.flac", "y");
      s.notifyInvalInode(2, 0, -1); // the listing is the directory's data
      await s.flushNotifications();
      assert.ok((await list()).includes("new.flac"), `inode ${ino} listed after the invalidation`);
    });
  },
);

Deno.test(
  "fuse: invalidations about inodes the kernel never looked up are not written; looked-up ones are",
  needsFuse,
  async () => {
    const fs = new DemoFs();
    const a = fs.addDir("a");
    const seen = fs.addFile("a/seen.flac", "x".repeat(100));
    const unseen = fs.addFile("b/unseen.flac", "y".repeat(100));
    await withMount(fs, { entryTtlMs: 60_000, attrTtlMs: 60_000 }, async (mnt, s) => {
      const stat = async (p: string) => {
        const r = await run(["stat", "-c", "%s", `${mnt}/${p}`]);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trim();
      };
      assert.equal(await stat("a/seen.flac"), "100");
      const sent0 = s.stats.notifications;
      const skipped0 = s.stats.notificationsSkipped;
      // Never looked up: the kernel holds nothing these could apply to.
      s.notifyInvalInode(unseen);
      s.notifyInvalEntry(unseen, "x");
      s.notifyDelete(unseen + 1000, unseen, "gone.flac");
      assert.equal(s.stats.notificationsSkipped, skipped0 + 3);
      assert.equal(s.stats.notifications, sent0);
      // Looked up (and the root, always held): written, and the kernel acts on them.
      fs.addFile("a/seen.flac", "z".repeat(7)); // a new inode under the same name
      s.notifyInvalInode(seen);
      s.notifyInvalEntry(a, "seen.flac");
      s.notifyInvalInode(1);
      await s.flushNotifications();
      assert.equal(s.stats.notifications, sent0 + 3);
      assert.equal(await stat("a/seen.flac"), "7", "the cached size was dropped");
      // Once looked up, the other file's notices go out too.
      assert.equal(await stat("b/unseen.flac"), "100");
      s.notifyInvalInode(unseen);
      await s.flushNotifications();
      assert.equal(s.stats.notifications, sent0 + 4);
    });
  },
);
