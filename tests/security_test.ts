/**
 * Issue 11 end to end: a root daemon mounts with `--allow-other`, and a second user tries what
 * an attacker on the same machine would. That user is created for the test (`useradd`) and
 * removed after it; where users cannot be created, `nobody` stands in (the test says so).
 * Everything the second user does runs in a process of its own (setpriv), so the kernel checks
 * it exactly as it would a real login.
 */
import assert from "node:assert/strict";
import { writeTrack } from "./fixtures/mod.ts";
import { tinyJpeg } from "./fixtures/mod.ts";
import { daemonOptions, type DaemonProcess, withDaemon, withDirs } from "./support/daemon.ts";
import { getXattr, needsFuse, run, waitFor } from "./support/helpers.ts";
import {
  asUser,
  denoFor,
  privateDirFor,
  type TestUser,
  throwawayUser,
} from "./support/other_user.ts";

const SOURCE_XATTR = "user.musicfs.source";

/** What the second user's process saw for one operation. */
type Outcome = { ok: true; value: string } | { ok: false; code: string };

/** Operations run as the second user: read a file, list a dir, stat, or get an xattr. */
type Op = { op: "read" | "readdir" | "stat" | "xattr"; path: string };

// Runs in `deno eval` as the second user: nothing of this checkout is needed (it may sit in a
// 0700 directory). Errors come back as their code (EACCES, EIO...).
const PROBE = `
const ops = JSON.parse(Deno.env.get("PROBE_OPS"));
const libc = Deno.dlopen("libc.so.6", {
  getxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  __errno_location: { parameters: [], result: "pointer" },
});
const names = { 1: "EPERM", 2: "ENOENT", 5: "EIO", 13: "EACCES", 61: "ENODATA", 95: "EOPNOTSUPP" };
const cstr = (s) => new TextEncoder().encode(s + "\\0");
const out = [];
for (const { op, path } of ops) {
  try {
    if (op === "read") {
      const b = await Deno.readFile(path);
      out.push({ ok: true, value: Array.from(b.subarray(0, 64), (x) => x.toString(16)).join(",") + ":" + b.length });
    } else if (op === "readdir") {
      const n = [];
      for await (const e of Deno.readDir(path)) n.push(e.name);
      out.push({ ok: true, value: n.sort().join("\\n") });
    } else if (op === "stat") {
      const s = await Deno.stat(path);
      out.push({ ok: true, value: (s.mode & 0o7777).toString(8) });
    } else {
      const buf = new Uint8Array(4096);
      const n = Number(libc.symbols.getxattr(cstr(path), cstr("${SOURCE_XATTR}"), buf, 4096n));
      if (n >= 0) out.push({ ok: true, value: new TextDecoder().decode(buf.subarray(0, n)) });
      else {
        const e = new Deno.UnsafePointerView(libc.symbols.__errno_location()).getInt32();
        out.push({ ok: false, code: names[e] ?? "errno " + e });
      }
    }
  } catch (e) {
    out.push({ ok: false, code: e.code ?? String(e) });
  }
}
console.log(JSON.stringify(out));
`;

/** Runs {@link Op}s as `user` and returns what each gave. */
class Prober {
  constructor(readonly user: TestUser, readonly deno: string, readonly home: string) {}

  async run(ops: Op[]): Promise<Outcome[]> {
    const r = await run([...asUser(this.user), this.deno, "eval", PROBE], {
      env: {
        PROBE_OPS: JSON.stringify(ops),
        DENO_DIR: `${this.home}/deno`,
        HOME: this.home,
        NO_COLOR: "1",
        PATH: "/usr/bin:/bin",
      },
    });
    assert.equal(r.code, 0, `the probe failed: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  }

  async one(op: Op["op"], path: string): Promise<Outcome> {
    return (await this.run([{ op, path }]))[0];
  }
}

/** A {@link Prober} for `user`, with a home of its own under `root`. */
async function proberFor(user: TestUser, root: string): Promise<Prober> {
  return new Prober(user, await denoFor(user, root), await privateDirFor(user, root, "home-"));
}

const refused = (o: Outcome, what: string) => {
  assert.ok(!o.ok, `${what} must be refused, got ${JSON.stringify(o)}`);
  assert.ok(o.code === "EACCES" || o.code === "PermissionDenied", `${what}: ${o.code}`);
};

/** The mounted path of each source file, found as root through the xattr. */
async function mountedPaths(mnt: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const list = await run(["find", `${mnt}/Artists`, "-type", "f"]);
  for (const p of list.stdout.trim().split("\n").filter(Boolean)) {
    out.set((await getXattr(p, SOURCE_XATTR))!, p);
  }
  return out;
}

/** Every file and directory below `dir` (lstat, no link followed). */
async function everything(dir: string): Promise<{ path: string; info: Deno.FileInfo }[]> {
  const out = [{ path: dir, info: await Deno.lstat(dir) }];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await everything(p));
    else out.push({ path: p, info: await Deno.lstat(p) });
  }
  return out;
}

Deno.test(
  "security: a second user gets what the sources allow and nothing else (a throwaway user from useradd, removed after; nobody if useradd fails)",
  { ...needsFuse, ignore: needsFuse.ignore || Deno.uid() !== 0 },
  async () => {
    const user = await throwawayUser();
    try {
      await withDirs(async (dirs) => {
        // The second user must reach the mountpoint and the library, not list our temp dir.
        await Deno.chmod(dirs.root, 0o711);
        await Deno.chmod(dirs.lib, 0o755);
        const lib = dirs.lib;
        const mk = async (dir: string, mode: number) => {
          await Deno.mkdir(`${lib}/${dir}`);
          await Deno.chmod(`${lib}/${dir}`, mode);
        };
        await mk("Public", 0o755);
        await mk("Private", 0o700);
        await mk("Theirs", 0o700);
        await mk("Swap", 0o755);
        const track = async (rel: string, artist: string, mode: number) => {
          await writeTrack(`${lib}/${rel}`, "mp3-id3v24", {
            artist,
            album: `${artist} Album`,
            title: `${artist} Song`,
            track: 1,
          });
          await Deno.chmod(`${lib}/${rel}`, mode);
        };
        await track("Public/open.mp3", "Open Band", 0o644);
        await Deno.writeFile(`${lib}/Public/cover.jpg`, tinyJpeg());
        await Deno.chmod(`${lib}/Public/cover.jpg`, 0o644);
        await track("Private/secret.mp3", "Secret Band", 0o600);
        await Deno.writeFile(`${lib}/Private/cover.jpg`, tinyJpeg());
        await Deno.chmod(`${lib}/Private/cover.jpg`, 0o600);
        await track("Theirs/mine.mp3", "Their Band", 0o600);
        await run(["chown", "-h", `${user.uid}:${user.gid}`, `${lib}/Theirs/mine.mp3`]);
        await run(["chown", "-h", `${user.uid}:${user.gid}`, `${lib}/Theirs`]);
        await track("Swap/swapped.mp3", "Swap Band", 0o644);
        // A file outside the library, as /etc/shadow is: root's alone, as long as the track.
        const secretFile = `${dirs.root}/outside-secret`;
        const trackSize = (await Deno.stat(`${lib}/Swap/swapped.mp3`)).size;
        await Deno.writeTextFile(secretFile, "root:SECRET:".repeat(trackSize / 12 + 1));
        await Deno.chmod(secretFile, 0o600);

        // A state dir an older version (or a umask) left open: fixed at start, with a warning.
        await Deno.mkdir(dirs.state, { mode: 0o755 });
        await Deno.chmod(dirs.state, 0o755);
        await Deno.writeTextFile(`${dirs.state}/old.log`, "names of private files\n");
        await Deno.chmod(`${dirs.state}/old.log`, 0o644);

        const probe = await proberFor(user, dirs.root);
        // The sources themselves: what the second user may and may not read.
        refused(await probe.one("read", `${lib}/Private/secret.mp3`), "the private source");
        assert.ok((await probe.one("read", `${lib}/Public/open.mp3`)).ok);

        await withDaemon(daemonOptions(dirs, { args: ["--allow-other"] }), async (d) => {
          await d.waitScanDone();
          assert.equal(
            d.stderr.match(/state dir .* was open to other users/g)?.length,
            1,
            d.stderr,
          );
          const mnt = dirs.mnt;
          const at = await mountedPaths(mnt);
          const open = at.get(`${lib}/Public/open.mp3`)!;
          const secret = at.get(`${lib}/Private/secret.mp3`)!;
          const mine = at.get(`${lib}/Theirs/mine.mp3`)!;
          const swapped = at.get(`${lib}/Swap/swapped.mp3`)!;
          assert.ok(open && secret && mine && swapped, JSON.stringify([...at]));
          const secretDir = secret.slice(0, secret.lastIndexOf("/"));
          const secretArtist = secretDir.slice(0, secretDir.lastIndexOf("/"));
          const mounts = await Deno.readTextFile("/proc/self/mounts");
          assert.match(
            mounts,
            new RegExp(`${mnt} fuse.musicfs [^ ]*default_permissions[^ ]*allow_other`),
          );

          const [
            openRead,
            secretRead,
            secretStat,
            secretList,
            artistList,
            coverRead,
            mineRead,
            openXattr,
            mineXattr,
            status,
            problems,
            musicfsList,
            searchList,
            searchQuery,
          ] = await probe.run([
            { op: "read", path: open },
            { op: "read", path: secret },
            { op: "stat", path: secret },
            { op: "readdir", path: secretDir },
            { op: "readdir", path: secretArtist },
            { op: "read", path: `${secretDir}/cover.jpg` },
            { op: "read", path: mine },
            { op: "xattr", path: open },
            { op: "xattr", path: mine },
            { op: "read", path: `${mnt}/.musicfs/status.json` },
            { op: "read", path: `${mnt}/.musicfs/problems.txt` },
            { op: "readdir", path: `${mnt}/.musicfs` },
            { op: "readdir", path: `${mnt}/.search` },
            { op: "readdir", path: `${mnt}/.search/Secret` },
          ]);
          // What the source allows: the public track, with the source's bytes; their own.
          const want = await probe.one("read", `${lib}/Public/open.mp3`);
          assert.deepEqual(openRead, want);
          assert.ok(mineRead.ok, `the user's own track: ${JSON.stringify(mineRead)}`);
          // Covers learn their source's mode in the background.
          const openCover = `${open.slice(0, open.lastIndexOf("/"))}/cover.jpg`;
          await waitFor(async () => (await probe.one("read", openCover)).ok, 10_000, "the cover");
          // And nothing else: the 0600 file, the 0700 folder and its cover.
          refused(secretRead, "the 0600 track");
          refused(secretStat, "a stat inside the 0700 folder");
          refused(secretList, "the private album folder");
          refused(artistList, "the private artist folder");
          refused(coverRead, "the private cover");
          refused(openXattr, "the source xattr of someone else's track");
          assert.deepEqual(mineXattr, { ok: true, value: `${lib}/Theirs/mine.mp3` });
          refused(status, "/.musicfs/status.json");
          refused(problems, "/.musicfs/problems.txt");
          refused(musicfsList, "/.musicfs");
          refused(searchList, "/.search");
          refused(searchQuery, "a /.search query");
          // Root (the daemon's user) still sees everything.
          assert.equal(await getXattr(secret, SOURCE_XATTR), `${lib}/Private/secret.mp3`);
          await Deno.readFile(secret);

          await swapTest(d, swapped, `${lib}/Swap/swapped.mp3`, secretFile);
        });

        // A second run shares /.search and fills the chunk cache; then nothing at rest may be
        // readable by the user.
        const args = ["--allow-other", "--allow-other-search", "--cache-reads", "always"];
        await withDaemon(
          daemonOptions(dirs, { args }),
          async (d) => {
            await d.waitScanDone();
            await sharedSearch(probe, dirs.mnt);
            const at = await mountedPaths(dirs.mnt);
            await Deno.readFile(at.get(`${lib}/Private/secret.mp3`)!);
            await waitFor(
              async () => ((await d.getStatus()).cache?.chunks ?? 0) > 0,
              10_000,
              "the chunk to be stored",
            );
            await restIsPrivate(probe, [dirs.state, dirs.cache]);
            // The control socket, wherever it lives (the runtime dir or the state dir).
            assert.equal((await Deno.lstat(d.socket)).mode! & 0o777, 0o600, d.socket);
          },
        );
        await restIsPrivate(probe, [dirs.state, dirs.cache]);
      });
    } finally {
      await user.remove();
    }
  },
);

/**
 * With `--allow-other-search` the user may run queries (not list past ones); a query folder
 * opens to them only when they can read one of its results; /.musicfs stays closed.
 */
async function sharedSearch(probe: Prober, mnt: string): Promise<void> {
  let open: Outcome | undefined;
  await waitFor(
    async () => {
      open = await probe.one("readdir", `${mnt}/.search/Open Band`);
      return open.ok && open.value !== "";
    },
    15_000,
    "a search for the public track",
  );
  assert.match((open as { value: string }).value, /^Open Band - Open Band Song\.mp3$/m);
  assert.ok(
    (await probe.one("read", `${mnt}/.search/Open Band/Open Band - Open Band Song.mp3`)).ok,
  );
  const [list, secret, status] = await probe.run([
    { op: "readdir", path: `${mnt}/.search` },
    { op: "readdir", path: `${mnt}/.search/Secret` },
    { op: "read", path: `${mnt}/.musicfs/status.json` },
  ]);
  refused(list, "listing /.search");
  refused(secret, "a query whose only result is private");
  // Not for want of results: root sees the private track there.
  const rootView = await Array.fromAsync(Deno.readDir(`${mnt}/.search/Secret`));
  assert.deepEqual(rootView.map((e) => e.name), ["Secret Band - Secret Band Song.mp3"]);
  refused(status, "/.musicfs/status.json with --allow-other-search");
}

/** A track swapped for a symlink to a file outside the library answers EIO, never its bytes. */
async function swapTest(
  d: DaemonProcess,
  mounted: string,
  source: string,
  outside: string,
): Promise<void> {
  await Deno.remove(source);
  await Deno.symlink(outside, source);
  let got: Uint8Array | undefined;
  let error: Error | undefined;
  try {
    got = await Deno.readFile(mounted);
  } catch (e) {
    error = e as Error;
  }
  const text = got && new TextDecoder().decode(got);
  assert.ok(!text?.includes("SECRET"), "the swapped-in file's bytes were served");
  assert.ok(error, "reading a swapped track must fail");
  // EIO from the open; the watcher may already have dropped the track (ENOENT) when it won the
  // race, which hands out nothing either.
  assert.ok(
    /Input\/output error|os error 5\b/.test(error.message) || error instanceof Deno.errors.NotFound,
    `a swapped track answers EIO: ${error.message}\n${d.stderr.slice(-2000)}`,
  );
}

/** No file in `dirs` can be read by the prober's user; every entry is 0700/0600 at most. */
async function restIsPrivate(probe: Prober, dirs: string[]): Promise<void> {
  const files: string[] = [];
  for (const dir of dirs) {
    const all = await everything(dir);
    assert.ok(all.some((e) => e.info.isFile), `${dir} holds files`);
    for (const { path, info } of all) {
      if (info.isSymlink) continue;
      assert.equal(info.mode! & 0o077, 0, `${path} is open to others: ${info.mode!.toString(8)}`);
      if (info.isFile) files.push(path);
    }
  }
  assert.ok(files.some((f) => f.includes("/chunks/")), "the cache holds chunks");
  const got = await probe.run(files.map((path) => ({ op: "read" as const, path })));
  got.forEach((o, i) => refused(o, files[i]));
}
