/**
 * The FUSE layer through real kernel mounts: the demo filesystem driven with ordinary tools
 * and Deno's async file APIs (never sync ones: they would block our own request loop).
 */
import assert from "node:assert/strict";
import {
  DemoFs,
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

/** Where a non-root child runs from: a readable view of the checkout and a home of its own. */
interface UserView {
  uid: number;
  gid: number;
  /** The checkout, bind-mounted where that user can read it (a checkout may sit in a 0700 dir). */
  repo: string;
  /** HOME and DENO_DIR of that user, inside the test's temp dir. */
  home: string;
}

function spawnDemo(mnt: string, extra: string[] = [], user?: UserView): Deno.ChildProcess {
  const repo = user?.repo ?? new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const deno = [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    `--config=${repo}/deno.json`,
    `${repo}/tests/support/demo_mount.ts`,
    mnt,
    ...extra,
  ];
  const cmd = user
    ? ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", ...deno]
    : deno;
  return new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: user
      ? {
        DENO_DIR: `${user.home}/deno`,
        HOME: user.home,
        XDG_RUNTIME_DIR: `${user.home}/run`,
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      }
      : undefined,
  }).spawn();
}

/**
 * A {@link UserView} for `uid` under `dir` (a 0755 temp dir): the checkout bind-mounted at
 * `dir/repo` (the temp dir's cleanup detaches it), a home owned by that user.
 */
async function userView(dir: string, uid: number, gid: number): Promise<UserView> {
  const checkout = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const repo = `${dir}/repo`;
  await Deno.mkdir(repo);
  const bind = await run(["mount", "--bind", checkout, repo]);
  assert.equal(bind.code, 0, `mount --bind: ${bind.stderr}`);
  const home = `${dir}/home`;
  for (const d of [home, `${home}/deno`, `${home}/run`]) {
    await Deno.mkdir(d, { mode: 0o700 });
    await Deno.chown(d, uid, gid);
  }
  return { uid, gid, repo, home };
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

Deno.test(
  "fuse: a non-root user mounts through fusermount3; after a SIGKILL the next mount clears the dead one",
  {
    ...needsFuse,
    ignore: needsFuse.ignore || Deno.uid() !== 0,
  },
  async () => {
    const dir = await tempDir();
    await Deno.chmod(dir.path, 0o755);
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    const who = await run(["id", "-u", "nobody"]);
    const uid = Number(who.stdout.trim());
    const gid = Number((await run(["id", "-g", "nobody"])).stdout.trim());
    await Deno.chown(mnt, uid, gid);
    // fusermount3 opens /dev/fuse as the calling user; distributions ship it 0666, but some
    // sandboxes make it 0600. Give it the usual mode for this test and put it back after.
    const devMode = (await Deno.stat("/dev/fuse")).mode! & 0o777;
    if ((devMode & 0o006) !== 0o006) await Deno.chmod("/dev/fuse", 0o666);
    try {
      await nonRootRounds(mnt, await userView(dir.path, uid, gid));
    } finally {
      await Deno.chmod("/dev/fuse", devMode);
      // The view is the checkout itself: never remove the temp dir while it is still bound.
      if (await isMounted(`${dir.path}/repo`)) await run(["umount", `${dir.path}/repo`]);
      if (await isMounted(`${dir.path}/repo`)) {
        throw new Error(`${dir.path}/repo is still bound to the checkout; not removing it`);
      }
      await dir.cleanup();
    }
  },
);

async function nonRootRounds(mnt: string, user: UserView): Promise<void> {
  const { uid, gid } = user;
  // Round "kill" leaves a dead mount (the helper's auto_unmount cannot see it die: it probes
  // as setuid root, which a mount without allow_other refuses); "restart" must clear it.
  for (const round of ["clean", "kill", "restart"]) {
    const child = spawnDemo(mnt, [], user);
    try {
      const line = await readLine(child.stdout);
      if (line !== "ready helper") {
        const err = await new Response(child.stderr).text();
        assert.fail(`child said ${JSON.stringify(line)}: ${err}`);
      }
      assert.ok(await isMounted(mnt));
      const mounts = await Deno.readTextFile("/proc/self/mounts");
      assert.match(mounts, new RegExp(`${mnt} fuse.musicfs ro,nosuid,nodev.*user_id=${uid}`));
      // Without allow_other only the mounting user may look inside, so read as that user.
      const cat = await run([
        "setpriv",
        `--reuid=${uid}`,
        `--regid=${gid}`,
        "--clear-groups",
        "cat",
        `${mnt}/sub/inner.txt`,
      ]);
      assert.equal(cat.stdout, "inner\n", cat.stderr);
      await assert.rejects(Deno.readTextFile(`${mnt}/sub/inner.txt`), Deno.errors.PermissionDenied);
      if (round === "kill") {
        child.kill("SIGKILL");
        await child.status;
        continue;
      }
      await child.stdin.close();
      assert.equal((await child.status).code, 0);
      await waitFor(async () => !(await isMounted(mnt)), 10_000, `the ${round} unmount`);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
    }
  }
}

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
