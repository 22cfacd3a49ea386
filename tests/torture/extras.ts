/**
 * The rest of the torture (issue 7): a dead origin (the library root vanishes mid-read), bad
 * input (huge tags, a huge album, deep folders, 255-byte and invalid UTF-8 names), and load (16
 * concurrent readers, `find` loops and searches, then an RSS leak check). Each runs the real
 * daemon and checks its own invariants; the numbers go into the summary table.
 *
 * Every mount and bind mount made here is undone in a `finally`.
 *
 * @module
 */
import { encodeTrack, FORMAT_EXT, makeLibrary } from "../fixtures/mod.ts";
import type { AudioFormat } from "../fixtures/mod.ts";
import { getXattr, isMounted, run, waitFor } from "../support/helpers.ts";
import { type DaemonProcess, detachIfMounted, startDaemon } from "../support/daemon.ts";
import {
  abortFuseAt,
  pool,
  sha256File,
  sha256Mounted,
  sleep,
  tail,
  type Torture,
} from "./harness.ts";

/** A daemon of its own (not the torture's library), with `--cache-reads always`. */
async function ownDaemon(
  t: Torture,
  root: string,
  base: string,
): Promise<{ d: DaemonProcess; mnt: string }> {
  const mnt = `${base}/mnt`;
  await Deno.mkdir(mnt, { recursive: true });
  const d = await startDaemon({
    libraries: [root],
    mountpoint: mnt,
    stateDir: `${base}/state`,
    cacheDir: `${base}/cache`,
    args: ["--cache-reads", "always"],
    readyTimeoutMs: 60_000,
  });
  t.log(`${t.step}: daemon ${d.pid} serving ${mnt}`);
  return { d, mnt };
}

/** Stop a daemon of its own: it must exit 0 and leave no mount. Never throws. */
async function stopOwn(t: Torture, d: DaemonProcess | undefined, mnt: string): Promise<void> {
  if (!d) return;
  if (d.exitStatus) {
    t.violation("the daemon had exited by itself", tail(d.stderr, 40));
  } else {
    d.kill("SIGTERM");
    const st = await d.waitExit(20_000).catch(() => undefined);
    if (!st) {
      t.violation("the daemon ignored SIGTERM for 20 s", tail(d.stderr, 40));
      await d.stop(1000);
    } else if (st.code !== 0) {
      t.violation(`clean stop exited with code ${st.code}`, tail(d.stderr, 40));
    }
  }
  if (await isMounted(mnt)) {
    t.violation("a mount was left behind after a clean stop");
    await abortFuseAt(mnt);
  }
}

/** Mounted files under `dir` (`find` in a child), or null when it fails. */
async function findFiles(dir: string, timeoutS = 60): Promise<string[] | null> {
  const r = await run(["timeout", String(timeoutS), "find", dir, "-type", "f", "-print0"]);
  return r.code === 0 ? r.stdout.split("\0").filter(Boolean) : null;
}

/** Mounted file -> source path (xattr), for every file of `files`. */
async function sourcesOf(files: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await pool(files, 16, async (f) => {
    const s = await getXattr(f, "user.musicfs.source");
    if (s !== null) out.set(f, s);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dead origin

/**
 * A library root that disappears while files are being read: the root is a bind mount of the
 * real library (root only; else the root is renamed away), detached with `umount -l` in the
 * middle of read loops. Then cached tracks still read correctly, uncached reads fail within
 * 5 s, listings and the control API answer; once the root returns, every track reads again.
 */
export async function deadOrigin(
  t: Torture,
  opts: { tracks: number; rescanWhileGone?: boolean },
): Promise<void> {
  t.step = "dead origin";
  if (t.daemon) await t.stopClean();
  const base = `${t.dirs.root}/origin`;
  const src = `${base}/src`;
  const root = `${base}/root`;
  const away = `${base}/away`;
  await Deno.mkdir(src, { recursive: true });
  await Deno.mkdir(root, { recursive: true });
  const fixture = await makeLibrary(src, { tracks: opts.tracks, seed: t.opts.seed ^ 0x5eed });
  const shaOf = new Map<string, string>(); // relative path -> sha
  await Promise.all(
    fixture.good.map(async (g) => shaOf.set(g.relPath, await sha256File(`${src}/${g.relPath}`))),
  );
  let bound = false;
  let renamed = false;
  let bind = Deno.uid() === 0;
  if (bind) {
    const m = await run(["mount", "--bind", src, root]);
    bound = m.code === 0;
    if (!bound) {
      bind = false;
      t.log(`dead origin: mount --bind failed (${m.stderr.trim()}); renaming the root instead`);
    }
  }
  const libRoot = bind ? root : src;
  let d: DaemonProcess | undefined;
  let mnt = `${base}/mnt`;
  let stopLoops = false;
  try {
    ({ d, mnt } = await ownDaemon(t, libRoot, base));
    await d.waitScanDone(60_000);
    const files = (await findFiles(`${mnt}/Artists`)) ?? [];
    const srcOf = await sourcesOf(files);
    const tracks = files.filter((f) => shaOf.has(srcOf.get(f)?.slice(libRoot.length + 1) ?? ""));
    if (tracks.length !== shaOf.size) {
      t.violation(`dead origin: ${tracks.length} tracks mounted, ${shaOf.size} in the library`);
    }
    const want = (f: string) => shaOf.get(srcOf.get(f)!.slice(libRoot.length + 1))!;
    const shuffled = t.rng.sample(tracks, tracks.length);
    const cached = shuffled.slice(0, shuffled.length >> 1);
    const uncached = shuffled.slice(shuffled.length >> 1);
    // Read half the tracks: they go into the chunk cache.
    const first = await sha256Mounted(cached);
    const wrong = cached.filter((f) => first.get(f) !== want(f));
    if (wrong.length) t.violation(`dead origin: ${wrong.length} tracks read wrong`, wrong[0]);
    // Let the cache writes land: the chunk count stops growing.
    let chunks = -1;
    await waitFor(async () => {
      const n = (await d!.getStatus()).cache?.chunks ?? 0;
      const stable = n > 0 && n === chunks;
      chunks = n;
      if (!stable) await sleep(300);
      return stable;
    }, 15_000).catch(() => t.violation("dead origin: the reads stored no chunk in the cache"));
    t.log(`dead origin: ${chunks} chunks cached after reading ${cached.length} tracks`);

    // Read loops over the cached half while the root vanishes.
    let loopErrors = 0;
    const loops = Array.from({ length: 4 }, async (_, i) => {
      const mine = cached.filter((_, j) => j % 4 === i);
      while (!stopLoops && mine.length) {
        const got = await sha256Mounted(mine);
        for (const f of mine) if (got.get(f) !== want(f)) loopErrors++;
      }
    });
    await sleep(t.rng.int(100, 600));
    const gone = performance.now();
    if (bind) {
      const u = await run(["umount", "-l", root]);
      if (u.code !== 0) throw new Error(`umount -l ${root}: ${u.stderr}`);
      bound = false;
    } else {
      await Deno.rename(src, away);
      renamed = true;
    }
    t.stats.corruptions++;
    t.log(`dead origin: root gone (${bind ? "umount -l of the bind mount" : "renamed away"})`);
    await sleep(1000);
    stopLoops = true;
    await Promise.all(loops);
    if (loopErrors) t.violation(`dead origin: ${loopErrors} cached reads failed mid-read`);

    // Cached reads still succeed, with the right bytes.
    const again = await sha256Mounted(cached);
    const lost = cached.filter((f) => again.get(f) !== want(f));
    if (lost.length) {
      t.violation(
        `dead origin: ${lost.length} of ${cached.length} cached tracks unreadable with the root gone`,
        `${lost[0]}: ${again.get(lost[0]) ?? "unreadable"}\n${tail(d.stderr, 15)}`,
      );
    }
    // Uncached reads fail fast (or return the right bytes), never hang.
    let maxMs = 0;
    let failed = 0;
    let wrongBytes = 0;
    await pool(uncached, 4, async (f) => {
      const s = performance.now();
      const r = await run(["timeout", "20", "sha256sum", "--", f]);
      const ms = performance.now() - s;
      maxMs = Math.max(maxMs, ms);
      if (r.code === 124) t.violation(`dead origin: an uncached read hung for 20 s`, f);
      else if (r.code !== 0) failed++;
      else if (r.stdout.slice(0, 64) !== want(f)) wrongBytes++;
    });
    if (maxMs > 5000) t.violation(`dead origin: an uncached read took ${Math.round(maxMs)} ms`);
    if (wrongBytes) t.violation(`dead origin: ${wrongBytes} uncached reads returned wrong bytes`);
    // Listings, search and the control API answer.
    const ls = await run(["timeout", "10", "find", `${mnt}/Artists`, "-type", "f"]);
    if (ls.code !== 0) t.violation("dead origin: listing /Artists failed", ls.stderr);
    const listed = ls.stdout.split("\n").filter(Boolean).length;
    const status = await d.getStatus(5000).catch((e) => {
      t.violation("dead origin: GET /status failed with the root gone", String(e));
      return undefined;
    });
    t.log(
      `dead origin: cached ok, ${failed}/${uncached.length} uncached failed (max ${
        Math.round(maxMs)
      } ms), ${listed} listed, origin healthy=${status?.origins[0]?.healthy}`,
    );

    // A rescan while the root is gone (an empty directory now) must not drop the library: an
    // unmounted share is not a deleted one. (Long run only until the daemon guards it.)
    if (opts.rescanWhileGone) {
      await d!.control("POST", "/rescan", 5000).catch(() => {});
      await d!.waitScanDone(30_000).catch(() => {});
      const after = await sha256Mounted(cached);
      const keptAfterRescan = cached.filter((f) => after.get(f) === want(f)).length;
      const st2 = await d!.getStatus(5000).catch(() => undefined);
      t.log(
        `dead origin: after a rescan, ${st2?.tracks} tracks, ${keptAfterRescan} cached readable`,
      );
      if (keptAfterRescan !== cached.length) {
        t.violation(
          `dead origin: a rescan with the root gone dropped tracks: ${st2?.tracks} of ${shaOf.size} left, ${keptAfterRescan}/${cached.length} cached still readable`,
        );
      }
    }

    // The root returns: every track reads again.
    if (bind) {
      const m = await run(["mount", "--bind", src, root]);
      if (m.code !== 0) throw new Error(`mount --bind: ${m.stderr}`);
      bound = true;
    } else {
      await Deno.rename(away, src);
      renamed = false;
    }
    const back = performance.now();
    let resumeMs = NaN;
    try {
      await waitFor(async () => {
        const got = await sha256Mounted(tracks);
        return tracks.every((f) => got.get(f) === want(f));
      }, 30_000);
      resumeMs = Math.round(performance.now() - back);
      t.stats.recoveries++;
    } catch {
      const files2 = (await findFiles(`${mnt}/Artists`)) ?? [];
      t.violation(
        "dead origin: tracks still unreadable 30 s after the root returned",
        `${files2.length} files listed\n${tail(d.stderr, 20)}`,
      );
    }
    t.stats.extras.push([
      "dead origin: uncached reads failed / max time",
      `${failed}/${uncached.length} / ${Math.round(maxMs)} ms`,
    ]);
    t.stats.extras.push([
      "dead origin: cached reads ok / resumed after",
      `${cached.length - lost.length}/${cached.length} / ${resumeMs} ms`,
    ]);
    t.log(`dead origin: resumed ${resumeMs} ms after the root returned (${gone.toFixed(0)})`);
  } finally {
    stopLoops = true;
    await stopOwn(t, d, mnt).catch(() => {});
    await detachIfMounted(mnt);
    if (bound) await run(["umount", "-l", root]);
    if (renamed) await Deno.rename(away, src).catch(() => {});
    if (await isMounted(root)) await run(["umount", "-l", root]);
  }
}

// ---------------------------------------------------------------------------------------------
// Bad input

/** One bad-input file: where it is and how to recognise it mounted or in problems.txt. */
interface BadFile {
  kind: string;
  /** Source path as bytes are written by `sh` (may hold `\377`: a printf format). */
  path: string;
  /** A word of the title: the mounted file name holds it. */
  token: string;
  /** sha256 of the bytes (set after writing). */
  sha?: string;
  /** Words of the source path that problems.txt would show. */
  problemHint: string;
}

/**
 * Files with 1 MB tags (padding and a 1 MB title), thousands of tracks in one album, folders
 * 100 levels deep, 255-byte names and invalid UTF-8 names: the scan survives, and each file is
 * served with identical bytes or listed in /.musicfs/problems.txt.
 */
export async function badInput(t: Torture, opts: { albumTracks: number }): Promise<void> {
  t.step = "bad input";
  if (t.daemon) await t.stopClean();
  const base = `${t.dirs.root}/bad`;
  const lib = `${base}/lib`;
  await Deno.mkdir(lib, { recursive: true });
  const files: BadFile[] = [];
  const write = async (rel: string, format: AudioFormat, token: string, extra: {
    title?: string;
    padBytes?: number;
    kind: string;
  }) => {
    const path = `${lib}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    const bytes = encodeTrack(format, {
      artist: "Bad Input Artist",
      album: `Bad ${extra.kind}`,
      title: extra.title ?? `${token} song`,
      track: 1,
      year: 2001,
    }, { padBytes: extra.padBytes, durationMs: 200 });
    await Deno.writeFile(path, bytes);
    files.push({ kind: extra.kind, path, token, problemHint: rel.slice(rel.lastIndexOf("/") + 1) });
  };
  // 1 MB tags: padding and a 1 MB title, in a few formats.
  for (const f of ["mp3-id3v24", "flac", "ogg-vorbis", "m4a"] as AudioFormat[]) {
    const ext = FORMAT_EXT[f];
    await write(`Huge Tags/padded-${f}.${ext}`, f, `Padded${f.replace(/-/g, "")}`, {
      padBytes: 1 << 20,
      kind: "1 MB tag padding",
    });
    const tok = `Hugetitle${f.replace(/-/g, "")}`;
    await write(`Huge Tags/title-${f}.${ext}`, f, tok, {
      title: `${tok} ${"x".repeat(1 << 20)}`,
      kind: "1 MB title",
    });
  }
  // 100 levels of folders.
  const deep = Array.from({ length: 100 }, (_, i) => `d${i}`).join("/");
  await write(`${deep}/deep.flac`, "flac", "Deepsong", { kind: "100 levels deep" });
  // 255-byte names (ASCII and 2-byte UTF-8), a 255-byte folder name, a title too long for a name.
  await write(`Long/${"n".repeat(251)}.mp3`, "mp3-id3v24", "Longascii", { kind: "255-byte name" });
  await write(`Long/${"é".repeat(125)}x.mp3`, "mp3-id3v24", "Longutf", { kind: "255-byte name" });
  await write(`${"f".repeat(255)}/song.flac`, "flac", "Longdir", { kind: "255-byte folder" });
  await write(`Long/short.flac`, "flac", "Longtitle", {
    title: `Longtitle ${"ü".repeat(400)}`,
    kind: "title longer than a name",
  });
  // Invalid UTF-8 names: a file and a folder, made by sh from a real track.
  const tmpl = `${base}/template.mp3`;
  await Deno.writeFile(
    tmpl,
    encodeTrack("mp3-id3v24", {
      artist: "Bad Input Artist",
      album: "Bad utf8",
      title: "Badutf song",
      track: 1,
    }, { durationMs: 200 }),
  );
  await Deno.writeFile(
    `${base}/template2.mp3`,
    encodeTrack("mp3-id3v24", {
      artist: "Bad Input Artist",
      album: "Bad utf8",
      title: "Badutfdir song",
      track: 2,
    }, { durationMs: 200 }),
  );
  const sh = await run([
    "sh",
    "-c",
    `set -e; cd "$1"; mkdir -p utf8; cp "$2" "utf8/$(printf 'bad\\377name\\300.mp3')"; ` +
    `mkdir "utf8/$(printf 'dir\\376x')"; cp "$3" "utf8/$(printf 'dir\\376x')/song.mp3"`,
    "sh",
    lib,
    tmpl,
    `${base}/template2.mp3`,
  ]);
  if (sh.code !== 0) throw new Error(`invalid UTF-8 names: ${sh.stderr}`);
  const utfSha = await sha256File(tmpl);
  files.push({
    kind: "invalid UTF-8 name",
    path: "",
    token: "Badutf ",
    problemHint: "bad\uFFFDname",
  });
  files.push({
    kind: "invalid UTF-8 folder",
    path: "",
    token: "Badutfdir",
    problemHint: "dir\uFFFDx",
  });
  const utfSha2 = await sha256File(`${base}/template2.mp3`);
  for (const f of files) f.sha = f.path ? await sha256File(f.path) : undefined;
  files[files.length - 2].sha = utfSha;
  files[files.length - 1].sha = utfSha2;
  // Thousands of tracks in one album.
  const albumDir = `${lib}/Huge Album`;
  await Deno.mkdir(albumDir, { recursive: true });
  await pool(Array.from({ length: opts.albumTracks }, (_, i) => i + 1), 32, async (i) => {
    await Deno.writeFile(
      `${albumDir}/${String(i).padStart(5, "0")} - Track ${i}.mp3`,
      encodeTrack("mp3-id3v24", {
        artist: "Huge Album Artist",
        album: "Huge Album",
        title: `Hugealbum track ${i}`,
        track: i,
        year: 2010,
      }, { durationMs: 100 }),
    );
  });

  let d: DaemonProcess | undefined;
  let mnt = `${base}/mnt`;
  try {
    const started = performance.now();
    ({ d, mnt } = await ownDaemon(t, lib, base));
    await d.waitScanDone(300_000);
    const scanMs = Math.round(performance.now() - started);
    if (d.exitStatus) throw new Error(`the daemon exited during the scan:\n${tail(d.stderr, 30)}`);
    const mounted = (await findFiles(`${mnt}/Artists`, 120)) ?? [];
    if (!mounted.length) t.violation("bad input: nothing under /Artists");
    const pr = await run(["timeout", "10", "cat", `${mnt}/.musicfs/problems.txt`]);
    if (pr.code !== 0) t.violation("bad input: problems.txt unreadable", pr.stderr);
    const problems = pr.stdout;
    // Each special file: served with identical bytes, or reported.
    let served = 0;
    let reported = 0;
    const byName = (tok: string) =>
      mounted.filter((m) => m.slice(m.lastIndexOf("/") + 1).includes(tok));
    const hashes = await sha256Mounted(files.flatMap((f) => byName(f.token)));
    for (const f of files) {
      const m = byName(f.token);
      if (m.length === 1 && hashes.get(m[0]) === f.sha) served++;
      else if (m.length === 0 && problems.includes(f.problemHint)) reported++;
      else {
        t.violation(
          `bad input (${f.kind}): ${m.length} mounted copies, ${
            m.length
              ? `bytes ${hashes.get(m[0]) === f.sha ? "ok" : "differ"}`
              : "not in problems.txt"
          }`,
          `${f.path || f.token}\n${m.slice(0, 2).join("\n")}`,
        );
      }
    }
    // The huge album: every track served once, bytes of a sample identical.
    const huge = byName("Hugealbum track");
    const hugeProblems = problems.split("\n").filter((l) => l.includes("Huge Album/")).length;
    if (huge.length + hugeProblems !== opts.albumTracks) {
      t.violation(
        `bad input: ${huge.length} album tracks served, ${hugeProblems} reported, ${opts.albumTracks} exist`,
      );
    }
    const sample = t.rng.sample(huge, 50);
    const sh2 = await sha256Mounted(sample);
    const srcs = await sourcesOf(sample);
    let bad = 0;
    for (const m of sample) {
      const s = srcs.get(m);
      if (!s || sh2.get(m) !== await sha256File(s)) bad++;
    }
    if (bad) t.violation(`bad input: ${bad} of ${sample.length} huge-album tracks differ`);
    const dirs = new Set(huge.map((m) => m.slice(0, m.lastIndexOf("/"))));
    if (dirs.size !== 1) t.violation(`bad input: the huge album is split into ${dirs.size} dirs`);
    // Search still answers, and the daemon is alive.
    const s = await run(["timeout", "10", "ls", `${mnt}/.search/hugealbum`]);
    if (s.code !== 0) t.violation("bad input: /.search does not answer", s.stderr);
    const st = await d.getStatus(5000).catch(() => undefined);
    if (!st) t.violation("bad input: GET /status failed");
    t.stats.extras.push([
      `bad input: special files served / reported (of ${files.length})`,
      `${served} / ${reported}`,
    ]);
    t.stats.extras.push([
      `bad input: one album of ${opts.albumTracks}: served, scan to done`,
      `${huge.length}, ${scanMs} ms`,
    ]);
    t.log(`bad input: ${served} served, ${reported} reported; problems.txt:\n${problems}`);
    await stopOwn(t, d, mnt);
    d = undefined;
    if (t.stats.violations.every((v) => !v.includes("bad input"))) t.stats.recoveries++;
  } finally {
    if (d) await d.stop(10_000);
    await detachIfMounted(mnt);
  }
}

// ---------------------------------------------------------------------------------------------
// Load

/** VmRSS of `pid` in KiB (0 when unreadable). */
async function rssKiB(pid: number): Promise<number> {
  try {
    const s = await Deno.readTextFile(`/proc/${pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * 16 concurrent readers (children: `dd | sha256sum` and `sha256sum`) streaming different files,
 * two `find` loops and /.search queries for `ms`; no errors, bytes identical, and the daemon's
 * RSS back within +50% or +64 MB of its baseline after a short settle. Then the invariants.
 */
export async function load(t: Torture, opts: { ms: number }): Promise<void> {
  t.step = "load";
  if (!t.daemon) await t.start();
  const d = t.daemon!;
  await d.waitScanDone(120_000); // the control socket may answer a little after the mount
  // 16 long tracks (a few MB each) so every reader really streams, besides the small ones.
  for (let i = 0; i < 16; i++) {
    const format = (["wav", "flac"] as AudioFormat[])[i % 2];
    const rel = `Torture Load/Long Album/${String(i + 1).padStart(2, "0")} - Long ${i}.${
      FORMAT_EXT[format]
    }`;
    const abs = `${t.lib}/${rel}`;
    await Deno.mkdir(abs.slice(0, abs.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(
      abs,
      encodeTrack(format, {
        artist: "Torture Load",
        album: "Long Album",
        title: `Long ${i}`,
        track: i + 1,
      }, { durationMs: 20_000 + i * 1000 }),
    );
    t.good.set(abs, { relPath: rel, sha: await sha256File(abs) });
  }
  let st = await d.getStatus();
  await waitFor(
    async () => (st = await d.getStatus().catch(() => st)).tracks === t.good.size,
    30_000,
  )
    .catch(async () => {
      t.violation(
        `load: 16 new tracks not picked up in 30 s: ${st.tracks} tracks, ${t.good.size} good`,
        `scan ${JSON.stringify(st.scan)} origins ${JSON.stringify(st.origins)}\n${
          tail(d.stderr, 30)
        }`,
      );
      await d.control("POST", "/rescan").catch(() => {});
    });
  await d.waitScanDone(120_000);
  const files = (await t.listMounted()) ?? [];
  const srcs = await sourcesOf(files);
  const tracks = files.filter((f) => t.good.has(srcs.get(f) ?? ""));
  const want = (f: string) => t.good.get(srcs.get(f)!)!.sha;
  // Warm up (every track read once, a find, a search), settle, then the baseline.
  await sha256Mounted(tracks);
  await run(["timeout", "30", "find", t.mnt, "-type", "f"]);
  await t.searchSome();
  await sleep(2000);
  const baseline = await rssKiB(d.pid);

  const end = Date.now() + opts.ms;
  let errors = 0;
  let reads = 0;
  let bytes = 0;
  const firstErrors: string[] = [];
  const err = (what: string) => {
    errors++;
    if (firstErrors.length < 5) firstErrors.push(what);
  };
  const sizes = new Map<string, number>();
  for (const f of tracks) sizes.set(f, (await Deno.stat(srcs.get(f)!)).size);
  const long = tracks.filter((f) => f.includes("/Long Album/"));
  const shuffled = t.rng.sample(tracks.filter((f) => !long.includes(f)), tracks.length);
  const readers = Array.from({ length: 16 }, async (_, i) => {
    // Each reader its own long track, then its share of the small ones.
    const mine = [...long.filter((_, j) => j === i), ...shuffled.filter((_, j) => j % 16 === i)];
    let k = 0;
    while (Date.now() < end && mine.length) {
      const f = mine[k++ % mine.length];
      const bs = [4096, 65536, 131072, 1 << 20][(i + k) % 4];
      const r = i % 2
        ? await run([
          "sh",
          "-c",
          `timeout 30 dd if="$1" bs=${bs} status=none | sha256sum`,
          "sh",
          f,
        ])
        : await run(["timeout", "30", "sha256sum", "--", f]);
      reads++;
      if (r.code !== 0) err(`read ${f}: ${r.code} ${r.stderr.trim()}`);
      else if (r.stdout.slice(0, 64) !== want(f)) err(`read ${f}: wrong bytes`);
      else bytes += sizes.get(f)!;
    }
  });
  let finds = 0;
  const finders = Array.from({ length: 2 }, async () => {
    while (Date.now() < end) {
      const r = await run(["timeout", "30", "find", t.mnt, "-type", "f"]);
      finds++;
      if (r.code !== 0) err(`find: ${r.code} ${r.stderr.slice(0, 300)}`);
      else if (r.stdout.split("\n").filter(Boolean).length < tracks.length) {
        err("find listed fewer files than tracks");
      }
    }
  });
  let searches = 0;
  const searcher = (async () => {
    while (Date.now() < end) {
      searches++;
      if (!(await t.searchSome())) err("search failed");
    }
  })();
  let peak = baseline;
  const sampler = (async () => {
    while (Date.now() < end) {
      peak = Math.max(peak, await rssKiB(d.pid));
      await sleep(250);
    }
  })();
  await Promise.all([...readers, ...finders, searcher, sampler]);
  if (errors) t.violation(`load: ${errors} errors`, firstErrors.join("\n"));
  // Settle, then the leak check.
  let after = 0;
  const limit = Math.max(baseline * 1.5, baseline + 64 * 1024);
  for (let i = 0; i < 10; i++) {
    await sleep(1000);
    after = await rssKiB(d.pid);
    if (after <= limit) break;
  }
  const mb = (k: number) => `${(k / 1024).toFixed(0)} MB`;
  if (after > limit) {
    t.violation(
      `load: RSS ${mb(after)} 10 s after the load, baseline ${mb(baseline)} (peak ${mb(peak)})`,
    );
  }
  t.stats.extras.push([
    `load: 16 readers + finds + searches for ${(opts.ms / 1000).toFixed(0)} s: reads, errors`,
    `${reads} (${(bytes / 2 ** 20).toFixed(0)} MB), ${errors}`,
  ]);
  t.stats.extras.push(["load: finds, searches", `${finds}, ${searches}`]);
  t.stats.extras.push([
    "load: daemon RSS baseline / peak / after",
    `${mb(baseline)} / ${mb(peak)} / ${mb(after)}`,
  ]);
  t.log(
    `load: ${reads} reads, ${finds} finds, ${searches} searches, ${errors} errors; RSS ${
      mb(baseline)
    } -> ${mb(peak)} -> ${mb(after)}`,
  );
  const ok = await t.checkOnline();
  if (ok && !errors && after <= limit) t.stats.recoveries++;
}
