import assert from "node:assert/strict";
import {
  detectFilesystem,
  HealthMonitor,
  isNetworkFs,
  isNetworkFsType,
  mountOf,
  type OriginHealth,
} from "./health.ts";
import { DemoFs, FuseSession } from "../fuse/mod.ts";
import { startDemoServer } from "../../tests/support/demo_server.ts";

const HAVE_FUSE = await Deno.stat("/dev/fuse").then(() => true, () => false);
const IS_ROOT = Deno.uid() === 0;
/** Tests that mount: a stuck stat is abandoned by design, so its op may outlive the test body. */
const mounting = { ignore: !HAVE_FUSE || !IS_ROOT, sanitizeOps: false, sanitizeResources: false };

async function run(cmd: string[]): Promise<void> {
  await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "null", stderr: "null" }).output();
}

/** A library root with one known file in a fresh temp dir. */
async function library(): Promise<{ dir: string; root: string; file: string }> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-health-" });
  const root = `${dir}/lib`;
  await Deno.mkdir(root);
  await Deno.writeTextFile(`${root}/track.flac`, "fLaC");
  return { dir, root, file: `${root}/track.flac` };
}

/**
 * A demo filesystem served by a child process at `<dir>/mnt`, then stopped with SIGSTOP: every
 * request to it waits forever, like a dead NFS server. `release()` kills the child and detaches
 * the mount, which fails the stuck requests.
 */
async function hangingMount(dir: string) {
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  const server = await startDemoServer(mnt);
  const child = server.child;
  child.kill("SIGSTOP");
  return {
    mnt,
    child,
    resume: () => child.kill("SIGCONT"),
    async release() {
      await server.kill();
      await run(["umount", "-l", mnt]);
    },
  };
}

Deno.test("health: a reachable root is healthy", async () => {
  const lib = await library();
  try {
    const mon = new HealthMonitor({
      origins: [{ id: "a", path: lib.root, probeFile: () => lib.file }],
    });
    await mon.probeNow();
    const s = mon.status("a");
    assert.equal(s.healthy, true);
    assert.equal(s.consecutiveFailures, 0);
    assert.equal(s.lastError, undefined);
    assert.ok(s.lastOk !== undefined && s.lastCheck !== undefined && s.lastOk === s.lastCheck);
    assert.equal(mon.isHealthy("a"), true);
    assert.deepEqual(mon.all().map((r) => [r.id, r.path, r.healthy]), [["a", lib.root, true]]);
  } finally {
    await Deno.remove(lib.dir, { recursive: true });
  }
});

Deno.test("health: a root that disappears is unhealthy, then healthy again when it returns", async () => {
  const lib = await library();
  const changes: [string, OriginHealth][] = [];
  try {
    const mon = new HealthMonitor({
      origins: [{ id: "nas", path: lib.root, probeFile: () => lib.file }],
      onChange: (id, h) => changes.push([id, h]),
    });
    await mon.probeNow();
    await Deno.rename(lib.root, `${lib.dir}/away`);
    await mon.probeNow();
    assert.equal(mon.isHealthy("nas"), false);
    assert.equal(mon.status("nas").consecutiveFailures, 1);
    await mon.probeNow();
    const down = mon.status("nas");
    assert.equal(down.healthy, false);
    assert.equal(down.consecutiveFailures, 2);
    assert.match(down.lastError ?? "", /No such file/i);

    await Deno.rename(`${lib.dir}/away`, lib.root);
    await mon.probeNow();
    const up = mon.status("nas");
    assert.equal(up.healthy, true);
    assert.equal(up.consecutiveFailures, 0);
    assert.ok(up.lastOk! >= down.lastCheck!);
    assert.deepEqual(changes.map(([id, h]) => [id, h.healthy, h.consecutiveFailures]), [
      ["nas", false, 1],
      ["nas", true, 0],
    ]);
  } finally {
    await Deno.remove(lib.dir, { recursive: true });
  }
});

Deno.test("health: an empty mountpoint without its known file is unhealthy", async () => {
  const lib = await library();
  try {
    const mon = new HealthMonitor({
      origins: [{ id: "nas", path: lib.root, probeFile: () => lib.file }],
    });
    await Deno.remove(lib.file);
    await mon.probeNow();
    assert.equal(mon.isHealthy("nas"), false);
    assert.match(mon.status("nas").lastError ?? "", /track\.flac/);
  } finally {
    await Deno.remove(lib.dir, { recursive: true });
  }
});

Deno.test("health: unhealthyAfter tolerates isolated failures", async () => {
  const lib = await library();
  try {
    const mon = new HealthMonitor({
      origins: [{ id: "a", path: `${lib.dir}/nope` }],
      unhealthyAfter: 2,
    });
    await mon.probeNow();
    assert.equal(mon.status("a").consecutiveFailures, 1);
    assert.equal(mon.isHealthy("a"), true);
    await mon.probeNow();
    assert.equal(mon.isHealthy("a"), false);
  } finally {
    await Deno.remove(lib.dir, { recursive: true });
  }
});

Deno.test("health: unknown origins", () => {
  const mon = new HealthMonitor({ origins: [] });
  assert.throws(() => mon.status("x"), RangeError);
  assert.equal(mon.isHealthy("x"), true);
  assert.throws(
    () => new HealthMonitor({ origins: [{ id: "a", path: "/" }, { id: "a", path: "/tmp" }] }),
    RangeError,
  );
});

/** Polls `cond` until it holds; fails after 10 s rather than hanging the suite. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), "condition never held");
}

Deno.test("health: run probes until aborted and a throwing listener does not stop it", async () => {
  const lib = await library();
  try {
    let calls = 0;
    const mon = new HealthMonitor({
      origins: [{ id: "a", path: lib.root, probeFile: () => lib.file }],
      intervalMs: 5,
      onChange: () => {
        calls++;
        throw new Error("listener bug");
      },
    });
    const ac = new AbortController();
    const running = mon.run(ac.signal);
    await Deno.rename(lib.root, `${lib.dir}/away`);
    await until(() => !mon.isHealthy("a"));
    await Deno.rename(`${lib.dir}/away`, lib.root);
    await until(() => mon.isHealthy("a"));
    ac.abort();
    await running;
    assert.equal(calls, 2);
    const checked = mon.status("a").lastCheck;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(mon.status("a").lastCheck, checked, "probes went on after the abort");
  } finally {
    await Deno.remove(lib.dir, { recursive: true });
  }
});

Deno.test(
  "health: a probe of a hanging origin times out under 2 s and never piles up",
  mounting,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "musicfs-health-" });
    const hang = await hangingMount(dir);
    try {
      const mon = new HealthMonitor({
        origins: [{ id: "dead", path: hang.mnt, probeFile: () => `${hang.mnt}/hello.txt` }],
        timeoutMs: 1500,
      });
      const t0 = performance.now();
      await mon.probeNow();
      assert.ok(performance.now() - t0 < 2000, "the probe waited for the hanging filesystem");
      let s = mon.status("dead");
      assert.equal(s.healthy, false);
      assert.equal(s.consecutiveFailures, 1);
      assert.match(s.lastError ?? "", /no answer within 1500 ms/);

      // The first probe is still stuck in the kernel: this round must not start another one.
      await mon.probeNow();
      s = mon.status("dead");
      assert.equal(s.consecutiveFailures, 2);
      assert.match(s.lastError ?? "", /previous probe has not answered/);

      // The server resumes: the stuck probe returns and the next round finds the origin healthy.
      hang.resume();
      for (let i = 0; i < 200 && !mon.isHealthy("dead"); i++) {
        await mon.probeNow();
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(mon.isHealthy("dead"), true);
      assert.equal(mon.status("dead").consecutiveFailures, 0);
    } finally {
      await hang.release();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("health: 3 hanging origins are probed in parallel", mounting, async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-health-" });
  const hang = await hangingMount(dir);
  try {
    const timeoutMs = 1500;
    const mon = new HealthMonitor({
      origins: [
        { id: "a", path: hang.mnt, probeFile: () => `${hang.mnt}/hello.txt` },
        { id: "b", path: `${hang.mnt}/sub` },
        { id: "c", path: `${hang.mnt}/missing` },
      ],
      timeoutMs,
    });
    const t0 = performance.now();
    await mon.probeNow();
    const elapsed = performance.now() - t0;
    for (const r of mon.all()) {
      assert.equal(r.healthy, false, r.id);
      assert.match(r.lastError ?? "", /no answer within/, r.id);
    }
    // One after the other would take at least 3 timeouts (4.5 s).
    assert.ok(elapsed < 2 * timeoutMs + 500, `3 probes took ${elapsed.toFixed(0)} ms`);
  } finally {
    await hang.release();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("health: isNetworkFsType", () => {
  for (const t of ["nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "fuse.sshfs", "fuse.rclone"]) {
    assert.equal(isNetworkFsType(t), true, t);
  }
  for (const t of ["fuse.s3fs", "fuse.somethingnew", "fuse"]) {
    assert.equal(isNetworkFsType(t), true, t);
  }
  for (const t of ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "fuse.musicfs", "fuseblk"]) {
    assert.equal(isNetworkFsType(t), false, t);
  }
});

Deno.test("health: mountOf picks the deepest mount and unescapes paths", () => {
  const info = [
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
    "40 22 0:45 / /mnt/nas rw,relatime shared:2 - nfs4 nas:/music rw,vers=4.2",
    "41 22 0:46 / /mnt/my\\040share rw - cifs //host/my\\040share rw",
    "42 40 0:47 / /mnt/nas/sub rw - fuse.sshfs me@host:/x rw",
    "43 22 0:48 / /mnt/nasty rw - ext4 /dev/sdb1 rw",
  ].join("\n");
  assert.equal(mountOf(info, "/mnt/nas/Album/01.flac")?.fstype, "nfs4");
  assert.equal(mountOf(info, "/mnt/nas")?.fstype, "nfs4");
  assert.equal(mountOf(info, "/mnt/nasty/a")?.fstype, "ext4");
  assert.equal(mountOf(info, "/mnt/nas/sub/a")?.fstype, "fuse.sshfs");
  assert.deepEqual(mountOf(info, "/mnt/my share/x"), {
    mountpoint: "/mnt/my share",
    fstype: "cifs",
    source: "//host/my share",
  });
  assert.equal(mountOf(info, "/home/me")?.mountpoint, "/");
});

Deno.test("health: isNetworkFs of a local dir is false", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-health-" });
  try {
    const d = await detectFilesystem(dir);
    assert.equal(d.network, false, d.reason);
    assert.equal(typeof d.magic, "number");
    assert.ok(d.fstype);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "health: isNetworkFs sees a fuse.sshfs mount as network and fuse.musicfs as local",
  mounting,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "musicfs-health-" });
    const sessions: FuseSession[] = [];
    try {
      for (const subtype of ["sshfs", "musicfs"]) {
        const mnt = `${dir}/${subtype}`;
        await Deno.mkdir(mnt);
        const fs = new DemoFs();
        fs.addDir("Album");
        // Served by this process: everything below must stay asynchronous.
        sessions.push(await FuseSession.mount(mnt, fs, { subtype }));
      }
      // Generous: this process's FUSE loop may still be starting its workers.
      const sshfs = await detectFilesystem(`${dir}/sshfs/Album`, { timeoutMs: 30_000 });
      assert.equal(sshfs.network, true, sshfs.reason);
      assert.equal(sshfs.fstype, "fuse.sshfs");
      assert.equal(await isNetworkFs(`${dir}/musicfs/Album`, { timeoutMs: 30_000 }), false);
    } finally {
      for (const s of sessions) await s.unmount();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
