/**
 * Hostile and hung sources (issue 12 items 1-2, issue 11 "opens cannot be redirected"): a
 * track swapped for a FIFO or for a symlink out of the library, a library that hangs (a FUSE
 * library SIGSTOPped), a link from the library to the mount itself, an edit that keeps size and
 * mtime, a source replaced while a handle reads it, and a source truncated or grown mid-read.
 *
 * Each case runs daemons of its own on a small library and checks its own invariants; every
 * step is bounded (over 30 s is a violation), and each case's figure goes into the summary
 * table. Every mount made here is undone in a `finally`.
 *
 * @module
 */
import { type AudioFormat, makeLibrary } from "../fixtures/mod.ts";
import { getXattr, isMounted, run, waitFor } from "../support/helpers.ts";
import { type DaemonProcess, musicfs, startDaemon } from "../support/daemon.ts";
import { abortFuseAt, sha256File, sleep, tail, type Torture } from "./harness.ts";

/** Longest a step may take before it counts as a hang. */
export const STEP_LIMIT_MS = 30_000;

/** Options of {@link sourceFaults}. */
export interface SourceFaultOptions {
  /** Tracks of each case's library. */
  tracks: number;
}

interface Case {
  t: Torture;
  base: string;
  lib: string;
  mnt: string;
  state: string;
  cache: string;
  /** Good tracks: mounted path -> { source, sha }. */
  tracks: Map<string, { source: string; sha: string }>;
  d?: DaemonProcess;
}

/** Run `fn` as one bounded step: over {@link STEP_LIMIT_MS} is a violation. Returns its ms. */
async function step<T>(
  t: Torture,
  what: string,
  fn: () => Promise<T>,
): Promise<{ value: T | undefined; ms: number }> {
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<"limit">((r) => timer = setTimeout(() => r("limit"), STEP_LIMIT_MS));
  try {
    const got = await Promise.race([fn(), limit]);
    const ms = Math.round(performance.now() - t0);
    if (got === "limit") {
      t.violation(`${t.step}: ${what} took over ${STEP_LIMIT_MS / 1000} s (a hang)`);
      return { value: undefined, ms };
    }
    return { value: got as T, ms };
  } finally {
    clearTimeout(timer);
  }
}

/** Read a mounted file in a child (bounded): its sha-256 and size, or the error text. */
async function readMounted(path: string): Promise<{ sha?: string; err?: string; code: number }> {
  const r = await run(["timeout", "25", "sha256sum", "--", path]);
  if (r.code === 0) return { sha: r.stdout.slice(0, 64), code: 0 };
  return { err: r.stderr.trim() || `exit ${r.code}`, code: r.code };
}

async function newCase(
  t: Torture,
  name: string,
  tracks: number,
  seedOffset: number,
  formats?: AudioFormat[],
): Promise<Case> {
  const base = `${t.dirs.root}/src-${name}`;
  const c: Case = {
    t,
    base,
    lib: `${base}/lib`,
    mnt: `${base}/mnt`,
    state: `${base}/state`,
    cache: `${base}/cache`,
    tracks: new Map(),
  };
  await Deno.mkdir(c.lib, { recursive: true });
  await Deno.mkdir(c.mnt, { recursive: true });
  await makeLibrary(c.lib, { tracks, seed: t.opts.seed ^ seedOffset, formats });
  return c;
}

async function start(c: Case, args: string[] = [], env?: Record<string, string>): Promise<void> {
  const { value: d } = await step(c.t, "start and first scan", async () => {
    const d = await startDaemon({
      libraries: [c.lib],
      mountpoint: c.mnt,
      stateDir: c.state,
      cacheDir: c.cache,
      args,
      env,
      readyTimeoutMs: STEP_LIMIT_MS,
    });
    c.d = d;
    await d.waitScanDone(STEP_LIMIT_MS);
    return d;
  });
  if (!d) throw new Error("the daemon did not come up");
  c.tracks = await mountedTracks(c);
}

/** Every mounted track under /Artists with its source and that source's sha. */
async function mountedTracks(c: Case): Promise<Map<string, { source: string; sha: string }>> {
  const r = await run(["timeout", "25", "find", `${c.mnt}/Artists`, "-type", "f", "-print0"]);
  const out = new Map<string, { source: string; sha: string }>();
  for (const f of r.stdout.split("\0").filter(Boolean)) {
    if (/\/cover\.[a-z]+$/.test(f)) continue;
    const source = await getXattr(f, "user.musicfs.source");
    if (source) out.set(f, { source, sha: await sha256File(source) });
  }
  return out;
}

async function stop(c: Case): Promise<void> {
  const d = c.d;
  c.d = undefined;
  if (d) {
    if (d.exitStatus) c.t.violation(`${c.t.step}: the daemon had exited`, tail(d.stderr, 30));
    else {
      d.kill("SIGTERM");
      const st = await d.waitExit(20_000).catch(() => undefined);
      if (!st) {
        c.t.violation(`${c.t.step}: the daemon ignored SIGTERM for 20 s`, tail(d.stderr, 30));
        await d.stop(1000);
      }
    }
  }
  if (await isMounted(c.mnt)) await abortFuseAt(c.mnt);
}

async function problems(c: Case): Promise<string> {
  const r = await run(["timeout", "25", "cat", `${c.mnt}/.musicfs/problems.txt`]);
  return r.stdout;
}

/** Wait (bounded) until problems.txt mentions `needle`; ms, or -1 when it never did. */
async function listedWithin(c: Case, needle: string, ms = 10_000): Promise<number> {
  const t0 = performance.now();
  try {
    await waitFor(async () => (await problems(c)).includes(needle), ms, `${needle} in problems`);
    return Math.round(performance.now() - t0);
  } catch {
    return -1;
  }
}

function pick<T>(t: Torture, xs: T[], n: number): T[] {
  return t.rng.sample(xs, Math.min(n, xs.length));
}

// ---------------------------------------------------------------------------------------------
// FIFO swap, symlink swap

async function swaps(t: Torture, o: SourceFaultOptions): Promise<void> {
  t.step = "source swaps (FIFO, symlink out of the library)";
  const c = await newCase(t, "swap", o.tracks, 0x51f0);
  try {
    await start(c);
    const [fifo, link, other] = pick(t, [...c.tracks.keys()], 3);
    const rel = (m: string) => c.tracks.get(m)!.source.slice(c.lib.length + 1);
    // A FIFO in place of a track: an open must not wait for a writer.
    const fifoSrc = c.tracks.get(fifo)!.source;
    await Deno.remove(fifoSrc);
    const mk = await run(["mkfifo", fifoSrc]);
    if (mk.code !== 0) throw new Error(`mkfifo failed: ${mk.stderr}`);
    const f = await step(t, "reading a track swapped for a FIFO", () => readMounted(fifo));
    if (f.value?.code === 124) t.violation(`${t.step}: the read of the FIFO track hung`);
    else if (f.value?.sha) t.violation(`${t.step}: the FIFO track read as data`);
    const fifoListed = await listedWithin(c, rel(fifo));
    if (fifoListed < 0) t.violation(`${t.step}: the FIFO is not listed in problems.txt`);

    // A symlink to a private file outside the library in place of a track.
    const secret = `${c.base}/secret.mp3`;
    await Deno.writeTextFile(secret, "root:*:SECRET-BYTES-THAT-MUST-NOT-BE-SERVED\n");
    const linkSrc = c.tracks.get(link)!.source;
    await Deno.remove(linkSrc);
    await Deno.symlink(secret, linkSrc);
    const s = await step(t, "reading a track swapped for a symlink out", async () => {
      const r = await run(["timeout", "25", "cat", "--", link]);
      return r;
    });
    if (s.value?.stdout.includes("SECRET")) {
      t.violation(`${t.step}: a symlink out of the library served its target's bytes`);
    }
    const linkListed = await listedWithin(c, rel(link));
    if (linkListed < 0) t.violation(`${t.step}: the symlink swap is not listed in problems.txt`);

    // Everything else still serves, and status answers.
    const ok = await step(t, "reading an untouched track", () => readMounted(other));
    if (ok.value?.sha !== c.tracks.get(other)!.sha) {
      t.violation(`${t.step}: an untouched track read wrong: ${ok.value?.err ?? "other bytes"}`);
    }
    const st = await step(t, "musicfs status", () => c.d!.getStatus(STEP_LIMIT_MS));
    if (!st.value) t.violation(`${t.step}: status did not answer`);
    t.stats.extras.push([
      "FIFO swap: read answered / listed in problems.txt",
      `${describe(f.value)} in ${f.ms} ms / after ${fifoListed} ms`,
    ]);
    t.stats.extras.push([
      "symlink swap out of the library: read answered / listed",
      `${s.value?.stdout.includes("SECRET") ? "SERVED THE TARGET" : errText(s.value?.stderr)} ` +
      `in ${s.ms} ms / after ${linkListed} ms`,
    ]);
  } finally {
    await stop(c);
  }
}

function errText(stderr: string | undefined): string {
  if (!stderr) return "no error";
  if (/Input\/output error/.test(stderr)) return "EIO";
  if (/No such file/.test(stderr)) return "ENOENT (already rescanned)";
  return stderr.split("\n")[0].slice(0, 60);
}

function describe(r: { sha?: string; err?: string; code: number } | undefined): string {
  if (!r) return "no answer";
  if (r.sha) return "data";
  return errText(r.err);
}

// ---------------------------------------------------------------------------------------------
// A link from the library to the mount itself

async function mountLoop(t: Torture, o: SourceFaultOptions): Promise<void> {
  t.step = "library links to its own mount";
  const c = await newCase(t, "loop", o.tracks, 0x100b);
  try {
    await start(c);
    const before = c.tracks.size;
    await Deno.symlink(c.mnt, `${c.lib}/mount-link`);
    const r = await step(t, "re-check after the link appears, then a full rescan", async () => {
      await sleep(1000);
      await c.d!.control("POST", "/rescan", STEP_LIMIT_MS);
      await sleep(300);
      return await c.d!.waitScanDone(STEP_LIMIT_MS);
    });
    const tracksAfter = r.value?.tracks ?? -1;
    if (tracksAfter !== before) {
      t.violation(`${t.step}: ${before} tracks became ${tracksAfter} (the mount indexed itself?)`);
    }
    const listed = (await problems(c)).includes("mount-link");
    if (!listed) t.violation(`${t.step}: the loop is not listed in problems.txt`);
    const ls = await step(t, "listing the mount", () => run(["timeout", "25", "ls", c.mnt]));
    if (ls.value?.code !== 0) t.violation(`${t.step}: the mount does not list`);
    await stop(c);
    // A restart with the link in place: the watcher's setup and the first scan must not hang.
    const again = await step(t, "restart with the link in place", async () => {
      await start(c);
      return c.tracks.size;
    });
    if (again.value !== before) {
      t.violation(`${t.step}: after a restart ${again.value} tracks, ${before} expected`);
    }
    t.stats.extras.push([
      "mount-in-library link: tracks before / after / after restart; rescan; restart",
      `${before} / ${tracksAfter} / ${again.value} (listed: ${listed}); ${r.ms} ms; ${again.ms} ms`,
    ]);
  } finally {
    await stop(c);
  }
}

// ---------------------------------------------------------------------------------------------
// An edit that keeps size and mtime

async function sameSizeEdit(t: Torture, o: SourceFaultOptions): Promise<void> {
  for (const mode of ["page cache", "chunk cache"] as const) {
    t.step = `same-size same-mtime edit (${mode})`;
    // MP3s: the edit is a retag inside the ID3v2 tag, as taggers that preserve mtime make.
    const c = await newCase(t, mode === "page cache" ? "edit" : "edit-cas", o.tracks, 0xed17, [
      "mp3-id3v23",
      "mp3-id3v24",
    ]);
    const args = mode === "chunk cache" ? ["--cache-reads", "always"] : [];
    try {
      await start(c, args);
      const titled: string[] = [];
      for (const [path, { source }] of c.tracks) {
        if (titleAt(await Deno.readFile(source)) !== undefined) titled.push(path);
      }
      const [victim] = pick(t, titled, 1);
      if (!victim) throw new Error("no MP3 of the case has an ID3v2 title");
      const { source, sha: oldSha } = c.tracks.get(victim)!;
      const first = await readMounted(victim);
      if (first.sha !== oldSha) t.violation(`${t.step}: the first read was wrong`);
      if (mode === "chunk cache") {
        await waitFor(async () => ((await c.d!.getStatus()).cache?.chunks ?? 0) > 0, 10_000)
          .catch(() => t.violation(`${t.step}: nothing was cached`));
      }
      // ctime has a 1 s grain in Deno's stat: let it move.
      await sleep(1100);
      const st = await Deno.stat(source);
      const bytes = await Deno.readFile(source);
      const at = titleAt(bytes)!;
      bytes[at] = bytes[at] === 0x58 ? 0x59 : 0x58; // "X" or "Y"
      await Deno.writeFile(source, bytes);
      await Deno.utime(source, st.atime!, st.mtime!);
      const newSha = await sha256File(source);
      const seen = new Set<string>();
      const r = await step(t, "serving the new bytes", async () => {
        const t0 = performance.now();
        let path = victim;
        for (;;) {
          const got = await readMounted(path);
          if (got.sha) seen.add(got.sha);
          if (got.sha === newSha) return Math.round(performance.now() - t0);
          // The new title renames the track once the watcher has re-read it: follow the source.
          if (!got.sha) path = (await pathOf(c, source)) ?? path;
          await sleep(100);
        }
      });
      const mixed = [...seen].filter((s) => s !== oldSha && s !== newSha).length;
      if (mixed) t.violation(`${t.step}: ${mixed} read(s) matched neither version`);
      await stop(c);
      await start(c, args);
      const now = await pathOf(c, source);
      const after = now ? await readMounted(now) : { sha: undefined };
      if (after.sha !== newSha) t.violation(`${t.step}: after a restart the old bytes came back`);
      t.stats.extras.push([
        `same size + restored mtime edit (${mode}): new bytes after / after restart`,
        `${r.value ?? "never"} ms / ${after.sha === newSha ? "new" : "OLD"}`,
      ]);
    } finally {
      await stop(c);
    }
  }
}

/** Where `source` is mounted under /Artists now, if anywhere. */
async function pathOf(c: Case, source: string): Promise<string | undefined> {
  c.tracks = await mountedTracks(c);
  return [...c.tracks.entries()].find(([, v]) => v.source === source)?.[0];
}

/**
 * Where the first character of the ID3v2 title (TIT2) of an MP3 is, if it has one. Changing it
 * keeps the size and the tag valid: what a tagger that rewrites within the tag's padding does.
 */
function titleAt(bytes: Uint8Array): number | undefined {
  const text = new TextDecoder("latin1").decode(bytes.subarray(0, Math.min(bytes.length, 65536)));
  const at = text.indexOf("TIT2");
  if (!text.startsWith("ID3") || at < 0) return undefined;
  // Frame header (10 bytes), the encoding byte, and a BOM for UTF-16 (encoding 1).
  return at + 11 + (bytes[at + 10] === 1 ? 2 : 0);
}

// ---------------------------------------------------------------------------------------------
// A source replaced while a handle reads it; truncated or grown mid-read

/** Make `rel` (an MP3 of the library) big: 8 MiB of zeros after the audio, which parsers skip. */
async function bigTrack(c: Case): Promise<string> {
  const mp3 = [...c.tracks.values()].map((v) => v.source).find((s) => s.endsWith(".mp3"));
  const src = mp3 ?? [...c.tracks.values()][0].source;
  const f = await Deno.open(src, { append: true });
  await f.write(new Uint8Array(8 << 20).fill(0));
  f.close();
  return src;
}

async function readAt(f: Deno.FsFile, offset: number, n: number): Promise<Uint8Array | string> {
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const k = await f.read(buf.subarray(got));
      if (k === null) break;
      got += k;
    }
    return buf.subarray(0, got);
  } catch (e) {
    return (e as Error).message;
  }
}

async function midRead(t: Torture, o: SourceFaultOptions): Promise<void> {
  const modes = Deno.uid() === 0 ? ["classic", "passthrough"] : ["classic"];
  for (const mode of modes) {
    t.step = `mid-read changes (${mode})`;
    const c = await newCase(t, `mid-${mode}`, Math.min(o.tracks, 4), 0x3a1d);
    const env = mode === "classic" ? { MUSICFS_PASSTHROUGH: "0" } : undefined;
    try {
      const figures: string[] = [];
      await start(c, [], env);
      const src = await bigTrack(c);
      await c.d!.control("POST", "/rescan", STEP_LIMIT_MS);
      await sleep(300);
      await c.d!.waitScanDone(STEP_LIMIT_MS);
      c.tracks = await mountedTracks(c);
      const mounted = [...c.tracks.entries()].find(([, v]) => v.source === src)?.[0];
      if (!mounted) throw new Error("the big track is not mounted");
      const size = (await Deno.stat(src)).size;

      // Truncation under an open handle.
      await step(t, "truncation mid-read", async () => {
        const f = await Deno.open(mounted, { read: true });
        try {
          await readAt(f, 0, 64 << 10);
          await Deno.truncate(src, size >> 2);
          const r = await readAt(f, size - (2 << 20), 64 << 10);
          const outcome = typeof r === "string"
            ? (/Input\/output|os error 5/.test(r) ? "EIO" : r)
            : r.length === 0
            ? "short read (EOF early)"
            : `${r.length} bytes`;
          figures.push(`truncated: ${outcome}`);
          if (mode === "classic" && outcome !== "EIO") {
            t.violation(`${t.step}: a read after truncation gave ${outcome}, not EIO`);
          }
        } finally {
          f.close();
        }
      });
      // Restore (the cut part was zeros), let the library take it in, then growth.
      const rt = await Deno.open(src, { write: true });
      await rt.truncate(size);
      rt.close();
      await sleep(1100);
      await c.d!.control("POST", "/rescan", STEP_LIMIT_MS);
      await sleep(300);
      await c.d!.waitScanDone(STEP_LIMIT_MS);
      await step(t, "growth mid-read", async () => {
        const f = await Deno.open(mounted, { read: true });
        try {
          await readAt(f, 0, 64 << 10);
          const g = await Deno.open(src, { append: true });
          await g.write(new Uint8Array(1 << 20).fill(7));
          g.close();
          const r = await readAt(f, size - 1000, 64 << 10);
          const outcome = typeof r === "string"
            ? (/Input\/output|os error 5/.test(r) ? "EIO" : r)
            : r.length > 1000
            ? `${r.length - 1000} bytes past the stat size`
            : `${r.length} bytes (to the old end)`;
          figures.push(`grown: ${outcome}`);
          if (mode === "classic" && outcome !== "EIO") {
            t.violation(`${t.step}: a read after growth gave ${outcome}, not EIO`);
          }
        } finally {
          f.close();
        }
      });

      // One version per open: replaced (temp file + rename, larger) while a handle reads it.
      const victim = [...c.tracks.entries()].find(([, v]) => v.source !== src)!;
      const [vm, { source: vs, sha: oldSha }] = victim;
      const held = await Deno.open(vm, { read: true });
      let bad = 0;
      let reads = 0;
      let eio = 0;
      let heldOutcome = "";
      try {
        const head = await readAt(held, 0, 4096);
        // Same tags (same place in the tree), other audio bytes, 100 kB longer.
        const oldBytes = await Deno.readFile(vs);
        const newBytes = new Uint8Array(oldBytes.length + 100_000);
        newBytes.set(oldBytes);
        for (let i = oldBytes.length - 64; i < oldBytes.length - 48; i++) newBytes[i] ^= 0x5a;
        const tmp = `${vs}.tmp-replace`;
        await Deno.writeFile(tmp, newBytes);
        await Deno.rename(tmp, vs);
        const newSha = await sha256File(vs);
        await step(t, "fresh opens while an older version is held", async () => {
          for (let i = 0; i < 10; i++) {
            const r = await readMounted(vm);
            reads++;
            if (r.sha === newSha) continue;
            if (!r.sha && /Input\/output/.test(r.err ?? "")) eio++;
            else bad++;
            await sleep(100);
          }
        });
        if (bad) t.violation(`${t.step}: ${bad} of ${reads} fresh opens read other bytes`);
        // The held handle goes on reading the version it opened.
        const rest = await readAt(held, 0, 64 << 20);
        if (typeof rest === "string") heldOutcome = /Input\/output/.test(rest) ? "EIO" : rest;
        else {
          const sha = await shaOf(rest);
          heldOutcome = sha === oldSha ? "old version" : sha === newSha ? "NEW version" : "MIXED";
          if (sha !== oldSha) t.violation(`${t.step}: the held handle read ${heldOutcome}`);
        }
        void head;
      } finally {
        held.close();
      }
      const after = await readMounted(vm);
      figures.push(
        `replaced while held: fresh opens ${reads - bad - eio}/${reads} new, ${eio} EIO, ` +
          `${bad} wrong; held handle: ${heldOutcome}; after close: ${
            after.sha === await sha256File(vs) ? "new" : "WRONG"
          }`,
      );
      if (after.sha !== await sha256File(vs)) {
        t.violation(`${t.step}: after the held handle closed, the new version did not read`);
      }
      t.stats.extras.push([`mid-read changes (${mode})`, figures.join("; ")]);
    } finally {
      await stop(c);
    }
  }
}

async function shaOf(b: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>));
  return [...d].map((x) => x.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// Every source hung

async function hungLibrary(t: Torture, o: SourceFaultOptions): Promise<void> {
  if (Deno.uid() !== 0) return;
  t.step = "every source hung (SIGSTOPped FUSE library)";
  const base = `${t.dirs.root}/src-hung`;
  const src = `${base}/src`;
  const demo = `${base}/demo`;
  await Deno.mkdir(src, { recursive: true });
  await Deno.mkdir(demo, { recursive: true });
  await makeLibrary(src, { tracks: o.tracks, seed: t.opts.seed ^ 0x4a46 });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./hung_library_child.ts", import.meta.url).pathname, demo, src],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const cases: Case[] = [];
  let stopped = false;
  try {
    const { value } = await reader.read();
    if (!new TextDecoder().decode(value).startsWith("ready")) throw new Error("no demo mount");
    // Two daemons on the hung library: one reading through the chunk cache, one direct.
    for (const [name, args] of [["cas", ["--cache-reads", "always"]], ["direct", []]] as const) {
      const c: Case = {
        t,
        base,
        lib: demo,
        mnt: `${base}/mnt-${name}`,
        state: `${base}/state-${name}`,
        cache: `${base}/cache-${name}`,
        tracks: new Map(),
      };
      await Deno.mkdir(c.mnt, { recursive: true });
      cases.push(c);
      await start(c, [...args]);
    }
    const [cas, direct] = cases;
    // Read straight from a FUSE library: a passthrough backing file on FUSE may be refused by
    // the kernel (stacking depth); that open alone falls back to userspace, the rest keep it.
    let directOk = 0;
    const directSome = [...direct.tracks.keys()].slice(0, 2);
    for (const m of directSome) {
      if ((await readMounted(m)).sha === direct.tracks.get(m)!.sha) directOk++;
    }
    if (directOk !== directSome.length) {
      t.violation(`${t.step}: ${directSome.length - directOk} direct reads were wrong`);
    }
    const fb = ((await direct.d!.getStatus()).fuse as { passthroughFallbacks?: number })
      .passthroughFallbacks;
    const casTracks = [...cas.tracks.keys()];
    const warm = casTracks.slice(0, casTracks.length >> 1);
    const cold = casTracks.slice(casTracks.length >> 1);
    for (const m of warm) await readMounted(m);
    await waitFor(
      async () => ((await cas.d!.getStatus()).cache?.chunks ?? 0) >= warm.length,
      15_000,
    )
      .catch(() => t.violation(`${t.step}: the warm reads were not cached`));
    await sleep(500);
    child.kill("SIGSTOP");
    stopped = true;
    const figures: string[] = [];
    for (const c of cases) {
      const ls = await step(t, `listing ${c.mnt}`, () => run(["timeout", "25", "ls", "-R", c.mnt]));
      if (ls.value?.code !== 0) t.violation(`${t.step}: ${c.mnt} does not list`);
      const some = [...c.tracks.keys()][0];
      const st = await step(t, "stat of a track", () => run(["timeout", "25", "stat", some]));
      if (st.value?.code !== 0) t.violation(`${t.step}: stat failed`);
      const status = await step(
        t,
        "musicfs status",
        () => musicfs(["status", "--state-dir", c.state], { timeoutMs: STEP_LIMIT_MS }),
      );
      if (status.value?.code !== 0) {
        t.violation(`${t.step}: musicfs status failed: ${status.value?.stderr.trim()}`);
      }
      figures.push(`${c === cas ? "cached" : "direct"} daemon: ${ls.ms} ms / ${status.ms} ms`);
    }
    let served = 0;
    const r1 = await step(t, "reading cached tracks", async () => {
      for (const m of warm) if ((await readMounted(m)).sha === cas.tracks.get(m)!.sha) served++;
    });
    if (served !== warm.length) {
      t.violation(`${t.step}: ${served} of ${warm.length} cached tracks served`);
    }
    let failedFast = 0;
    let worst = 0;
    await step(t, "reading uncached tracks", async () => {
      for (const m of [...cold, ...[...direct.tracks.keys()].slice(0, 3)]) {
        const t0 = performance.now();
        const r = await readMounted(m);
        worst = Math.max(worst, performance.now() - t0);
        if (!r.sha && r.code !== 124) failedFast++;
      }
    });
    t.stats.extras.push(
      ["every source hung (SIGSTOPped FUSE library): ls -R / musicfs status", figures.join("; ")],
      [
        "every source hung: cached tracks served / uncached reads failed, slowest",
        `${served} of ${warm.length} in ${r1.ms} ms / ${failedFast} of ${
          cold.length + Math.min(3, direct.tracks.size)
        }, ${Math.round(worst)} ms`,
      ],
      [
        "FUSE library, live: direct reads right / passthrough fallbacks (per open)",
        `${directOk} of ${directSome.length} / ${fb}`,
      ],
    );
  } finally {
    if (stopped) child.kill("SIGCONT");
    for (const c of cases) await stop(c);
    await child.stdin.close().catch(() => {});
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const done = await Promise.race([child.status, sleep(10_000).then(() => undefined)]);
    if (!done) {
      child.kill("SIGKILL");
      await child.status;
    }
    if (await isMounted(demo)) await abortFuseAt(demo);
  }
}

/** Every source case, in order; each records its figures and violations. */
export async function sourceFaults(t: Torture, o: SourceFaultOptions): Promise<void> {
  if (t.daemon) await t.stopClean();
  for (const run of [swaps, mountLoop, sameSizeEdit, midRead, hungLibrary]) {
    try {
      await run(t, o);
    } catch (e) {
      t.violation(`${t.step}: the case stopped: ${(e as Error).stack ?? e}`);
    }
  }
}
