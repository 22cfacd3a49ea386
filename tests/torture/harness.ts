/**
 * Torture harness (issue 7): the real musicfs daemon as a child process on a generated library,
 * randomized crashes and store corruption, and the invariants checked after every step.
 *
 * Everything random comes from one seeded PRNG; the seed is printed and
 * `MUSICFS_TORTURE_SEED=<n>` replays the same choices (timings still vary).
 *
 * Reads through the mount are always made by child processes (`sha256sum`, `cat`, `ls`, `find`
 * under `timeout`) or async FFI (getxattr), never by sync calls: a sync call would block this
 * process while it may be needed elsewhere, and a bug must hang a child, not the harness.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { encodeTrack, type FixtureLibrary, FORMAT_EXT, makeLibrary } from "../fixtures/mod.ts";
import type { AudioFormat } from "../fixtures/mod.ts";
import { Prng } from "../fixtures/prng.ts";
import { getXattr, isMounted, run, waitFor } from "../support/helpers.ts";
import {
  type DaemonDirs,
  daemonDirs,
  type DaemonProcess,
  type DaemonStatus,
  detachIfMounted,
  musicfs,
  startDaemon,
} from "../support/daemon.ts";
import { Database } from "../../src/library/mod.ts";
import { inspectSnapshot } from "../../src/search/mod.ts";
import { checkIndex } from "../../src/cas/mod.ts";

// ---------------------------------------------------------------------------------------------
// Seed and PRNG

/** The seed of this run: `MUSICFS_TORTURE_SEED` or a fresh one. */
export function tortureSeed(): number {
  const env = Deno.env.get("MUSICFS_TORTURE_SEED");
  if (env && /^\d+$/.test(env)) return Number(env) >>> 0;
  return (Math.random() * 2 ** 32) >>> 0;
}

/** A seeded PRNG with the few helpers the torture needs. */
export class Rng extends Prng {
  /** `n` distinct elements of `items` (all of them when `n >= items.length`). */
  sample<T>(items: readonly T[], n: number): T[] {
    const a = [...items];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a.slice(0, Math.min(n, a.length));
  }
}

// ---------------------------------------------------------------------------------------------
// Stats

/** What a run did; the summary table of `deno task torture`. */
export interface TortureStats {
  rounds: number;
  crashes: number;
  corruptions: number;
  recoveries: number;
  violations: string[];
  /** Milliseconds from spawn to "serving", for every start after a crash or corruption. */
  serveMs: number[];
  /** Work actions that failed while a crash was pending (expected; informational). */
  workErrors: number;
  /** More rows of the summary table (dead origin, bad input, load). */
  extras: [string, string][];
}

function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : Math.round((s[m - 1] + s[m]) / 2);
}

/** The summary table as text. */
export function summaryTable(s: TortureStats, seed: number, elapsedMs: number): string {
  const rows: [string, string][] = [
    ["seed", String(seed)],
    ["rounds run", String(s.rounds)],
    ["crashes injected (SIGKILL)", String(s.crashes)],
    ["corruptions injected", String(s.corruptions)],
    ["recoveries", String(s.recoveries)],
    ["invariant violations", String(s.violations.length)],
    ["time to serve after restart, median", `${median(s.serveMs)} ms`],
    ["time to serve after restart, max", `${s.serveMs.length ? Math.max(...s.serveMs) : NaN} ms`],
    ...s.extras,
    ["total time", `${(elapsedMs / 1000).toFixed(1)} s`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  const v = Math.max(...rows.map((r) => r[1].length));
  return [
    `| ${"what".padEnd(w)} | ${"value".padEnd(v)} |`,
    `|${"-".repeat(w + 2)}|${"-".repeat(v + 2)}|`,
    ...rows.map(([a, b]) => `| ${a.padEnd(w)} | ${b.padEnd(v)} |`),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// The harness

/** A source file that must appear exactly once under /Artists. */
interface GoodFile {
  relPath: string;
  sha: string;
}

/** Options of {@link Torture.create}. */
export interface TortureOptions {
  seed: number;
  /** Good tracks of the generated library. */
  tracks: number;
  /** Broken files mixed in. */
  broken?: number;
  /** How many mounted files to hash in a normal check (all in a `full` check). */
  sample?: number;
  /** Print progress lines. */
  verbose?: boolean;
}

const SHA_TIMEOUT_S = 120;

/** One torture run: a library, dirs, the daemon, and the bookkeeping of what must be there. */
export class Torture {
  readonly rng: Rng;
  readonly stats: TortureStats = {
    rounds: 0,
    crashes: 0,
    corruptions: 0,
    recoveries: 0,
    violations: [],
    serveMs: [],
    workErrors: 0,
    extras: [],
  };
  /** Good source files by absolute path. */
  readonly good = new Map<string, GoodFile>();
  /** Cover images (absolute source paths): may appear in /Artists. */
  readonly covers = new Set<string>();
  /** The daemon currently running, if any. */
  daemon: DaemonProcess | undefined;
  /** The step the invariants are checked for (printed with violations). */
  step = "setup";
  #added = 0;
  #mountedFiles: string[] = [];

  private constructor(
    readonly opts: TortureOptions,
    readonly dirs: DaemonDirs,
    readonly fixture: FixtureLibrary,
  ) {
    this.rng = new Rng(opts.seed);
  }

  /** Generate the library and the dirs. */
  static async create(opts: TortureOptions): Promise<Torture> {
    const dirs = await daemonDirs("musicfs-torture-");
    try {
      const fixture = await makeLibrary(dirs.lib, {
        tracks: opts.tracks,
        seed: opts.seed,
        broken: opts.broken ?? 0,
        covers: true,
        extras: true,
      });
      const t = new Torture(opts, dirs, fixture);
      await Promise.all(fixture.good.map((g) => t.#addGood(g.relPath)));
      for (const c of fixture.covers) t.covers.add(`${dirs.lib}/${c}`);
      return t;
    } catch (e) {
      await dirs.cleanup();
      throw e;
    }
  }

  get lib(): string {
    return this.dirs.lib;
  }
  get mnt(): string {
    return this.dirs.mnt;
  }
  get state(): string {
    return this.dirs.state;
  }
  get cache(): string {
    return this.dirs.cache;
  }

  log(msg: string): void {
    if (this.opts.verbose) console.error(`[torture ${this.opts.seed}] ${msg}`);
  }

  async #addGood(relPath: string): Promise<void> {
    const abs = `${this.lib}/${relPath}`;
    this.good.set(abs, { relPath, sha: await sha256File(abs) });
  }

  /** Record a broken invariant (never throws). */
  violation(what: string, detail = ""): void {
    const text = `seed ${this.opts.seed}, ${this.step}: ${what}${detail ? `\n${detail}` : ""}`;
    this.stats.violations.push(text);
    console.error(`*** VIOLATION ${text}`);
  }

  // -------------------------------------------------------------------------------------------
  // Daemon control

  /** Start the daemon; records the time to serve when `afterFault`. */
  async start(opts: { afterFault?: boolean; stateDir?: string } = {}): Promise<DaemonProcess> {
    if (this.daemon) throw new Error("a daemon is already running");
    const started = performance.now();
    const d = await startDaemon({
      libraries: [this.lib],
      mountpoint: this.mnt,
      stateDir: opts.stateDir ?? this.state,
      cacheDir: this.cache,
      args: ["--cache-reads", "always"],
      readyTimeoutMs: 60_000,
    });
    const ms = Math.round(performance.now() - started);
    if (opts.afterFault) this.stats.serveMs.push(ms);
    this.daemon = d;
    this.#mountedFiles = [];
    this.log(`daemon ${d.pid} serving after ${ms} ms (${d.tracksAtReady} tracks at ready)`);
    return d;
  }

  /**
   * Start after a fault: a start that fails is a violation (with the daemon's log), and the
   * run cannot go on (throws).
   */
  async restart(): Promise<DaemonProcess> {
    try {
      return await this.start({ afterFault: true });
    } catch (e) {
      this.violation("the daemon did not come back", tail((e as Error).message, 40));
      throw e;
    }
  }

  /** SIGKILL the daemon and wait for it; the (now dead) mount is left in place. */
  async crash(): Promise<void> {
    const d = this.daemon;
    if (!d) return;
    d.kill("SIGKILL");
    await d.waitExit(20_000);
    this.daemon = undefined;
    this.stats.crashes++;
  }

  /** SIGTERM: the daemon must exit 0 and leave no mount behind. */
  async stopClean(): Promise<void> {
    const d = this.daemon;
    if (!d) return;
    this.daemon = undefined;
    if (d.exitStatus) {
      this.violation("the daemon had exited by itself", tail(d.stderr, 40));
      await detachIfMounted(this.mnt);
      return;
    }
    d.kill("SIGTERM");
    const st = await d.waitExit(20_000).catch(() => undefined);
    if (!st) {
      this.violation("the daemon ignored SIGTERM for 20 s", tail(d.stderr, 40));
      await d.stop(1000);
    } else if (st.code !== 0) {
      this.violation(`clean stop exited with code ${st.code}`, tail(d.stderr, 40));
    }
    if (await isMounted(this.mnt)) {
      this.violation("a mount was left behind after a clean stop");
      await detachIfMounted(this.mnt);
    }
  }

  /** Stop whatever runs and detach a mount left behind; never throws. */
  async shutdown(): Promise<void> {
    const d = this.daemon;
    this.daemon = undefined;
    if (d) await d.stop(15_000);
    await detachIfMounted(this.mnt);
  }

  /** Shut down and remove everything. */
  async cleanup(): Promise<void> {
    await this.shutdown();
    await this.dirs.cleanup();
  }

  // -------------------------------------------------------------------------------------------
  // Work while the daemon runs

  /** Mounted files under /Artists (not covers), listed by `find` in a child. */
  async listMounted(): Promise<string[] | null> {
    const r = await run([
      "timeout",
      "30",
      "find",
      `${this.mnt}/Artists`,
      "-type",
      "f",
      "-print0",
    ]);
    if (r.code !== 0) return null;
    return r.stdout.split("\0").filter(Boolean);
  }

  /** Add a new good source file (a watcher update). */
  async addSource(): Promise<string> {
    const n = ++this.#added;
    const format = this.rng.pick(["flac", "mp3-id3v24", "ogg-vorbis", "wav"] as AudioFormat[]);
    const rel = `Torture Added/Round Album ${n % 7}/${String(n).padStart(3, "0")} - Added ${n}.${
      FORMAT_EXT[format]
    }`;
    const abs = `${this.lib}/${rel}`;
    await Deno.mkdir(abs.slice(0, abs.lastIndexOf("/")), { recursive: true });
    const bytes = encodeTrack(format, {
      artist: `Torture Artist ${n % 5}`,
      album: `Torture Album ${n % 7}`,
      title: `Added Song ${n}`,
      track: (n % 20) + 1,
      year: 2000 + (n % 20),
      genre: "Noise",
    });
    // Written as a temp file and renamed, like a careful copier would.
    await Deno.writeFile(`${abs}.part`, bytes);
    await Deno.rename(`${abs}.part`, abs);
    this.good.set(abs, { relPath: rel, sha: await sha256File(abs) });
    return rel;
  }

  /** Remove a random good source file (a watcher update). */
  async removeSource(): Promise<string | undefined> {
    if (this.good.size <= 10) return undefined;
    const abs = this.rng.pick([...this.good.keys()].sort());
    this.good.delete(abs);
    await Deno.remove(abs);
    return abs;
  }

  /** Read a few random mounted tracks in a child (`cat`). */
  async readSome(n: number): Promise<boolean> {
    if (!this.#mountedFiles.length) this.#mountedFiles = (await this.listMounted()) ?? [];
    if (!this.#mountedFiles.length) return false;
    const picks = this.rng.sample(this.#mountedFiles, n);
    const r = await run(["sh", "-c", 'timeout 20 cat -- "$@" > /dev/null', "sh", ...picks]);
    return r.code === 0;
  }

  /** A search through /.search (a directory listing in a child). */
  async searchSome(): Promise<boolean> {
    const words = ["love", "night", "silver", "fox", "river", "added", "song", "jazz", "rock"];
    const q = this.rng.pick(words);
    const r = await run(["timeout", "10", "ls", `${this.mnt}/.search/${q}`]);
    return r.code === 0;
  }

  /**
   * Let the daemon work for `ms`: reads, searches, source files added and removed, rescans,
   * status requests; with `killAtMs`, SIGKILL it at that moment (mid-work).
   */
  async work(ms: number, killAtMs?: number): Promise<void> {
    const end = Date.now() + ms;
    let killed = false;
    const killer = killAtMs === undefined ? undefined : (async () => {
      await sleep(killAtMs);
      killed = true;
      this.log(`SIGKILL at ${killAtMs} ms`);
      await this.crash();
    })();
    const d = this.daemon!;
    const worker = async (id: number) => {
      while (!killed && Date.now() < end) {
        const action = this.rng.int(0, 9);
        let ok = true;
        try {
          if (action <= 3) ok = await this.readSome(this.rng.int(1, 4));
          else if (action <= 5) ok = await this.searchSome();
          else if (action === 6) await this.addSource();
          else if (action === 7) await this.removeSource();
          else if (action === 8) await d.control("POST", "/rescan", 3000);
          else await d.getStatus(3000);
        } catch {
          ok = false;
        }
        if (!ok) {
          if (!killed) this.log(`worker ${id}: action ${action} failed while serving`);
          this.stats.workErrors++;
        }
        await sleep(this.rng.int(0, 60));
      }
    };
    await Promise.all([worker(0), worker(1), worker(2)]);
    if (killer) await killer;
  }

  // -------------------------------------------------------------------------------------------
  // Invariants

  /**
   * Invariants of a running daemon: the mount answers; the scan completes; tracks in status
   * equal the good files; every good file is under /Artists exactly once with identical bytes
   * (`full`: all hashed, else a sample), nothing else is; the search index holds every track.
   */
  async checkOnline(opts: { full?: boolean; scanTimeoutMs?: number } = {}): Promise<boolean> {
    const before = this.stats.violations.length;
    const d = this.daemon;
    if (!d) {
      this.violation("checkOnline without a daemon");
      return false;
    }
    // The mount answers.
    const ls = await run(["timeout", "10", "ls", this.mnt]);
    if (ls.code !== 0 || !ls.stdout.includes("Artists")) {
      this.violation("the mount does not answer", `ls: ${ls.code} ${ls.stderr}`);
      return false;
    }
    // The scan completes and the track count matches.
    let status: DaemonStatus;
    try {
      status = await d.waitScanDone(opts.scanTimeoutMs ?? 120_000);
    } catch (e) {
      this.violation("the scan did not complete", `${(e as Error).message}\n${tail(d.stderr, 30)}`);
      return false;
    }
    const want = this.good.size;
    let statusError = "";
    try {
      await waitFor(
        async () => {
          try {
            status = await d.getStatus();
            statusError = "";
          } catch (e) {
            statusError = String(e);
            return false;
          }
          return status.tracks === want;
        },
        15_000,
        "tracks",
      );
    } catch {
      this.violation(
        statusError
          ? `GET /status fails after the scan: ${statusError}`
          : `status says ${status.tracks} tracks after the scan, ${want} good files exist`,
        tail(d.stderr, 20),
      );
    }
    // Every good file exactly once under /Artists, nothing else, identical bytes.
    const files = await this.listMounted();
    if (!files) {
      this.violation("find under /Artists failed");
      return false;
    }
    this.#mountedFiles = files;
    const bySource = new Map<string, string[]>();
    const unexpected: string[] = [];
    const noXattr: string[] = [];
    await pool(files, 16, async (f) => {
      const src = await getXattr(f, "user.musicfs.source");
      if (src === null) {
        noXattr.push(f);
        return;
      }
      if (this.good.has(src)) {
        const l = bySource.get(src) ?? [];
        l.push(f);
        bySource.set(src, l);
      } else if (!this.covers.has(src)) unexpected.push(`${f} -> ${src}`);
    });
    if (noXattr.length) {
      this.violation(`${noXattr.length} mounted files without a source xattr`, noXattr[0]);
    }
    if (unexpected.length) {
      this.violation(
        `${unexpected.length} mounted files whose source is not a good file`,
        unexpected.slice(0, 5).join("\n"),
      );
    }
    const missing = [...this.good.keys()].filter((s) => !bySource.has(s));
    if (missing.length) {
      this.violation(
        `${missing.length} good files missing under /Artists`,
        missing.slice(0, 5).join("\n"),
      );
    }
    const dup = [...bySource].filter(([, l]) => l.length > 1);
    if (dup.length) {
      this.violation(
        `${dup.length} good files appear more than once`,
        dup.slice(0, 3).map(([s, l]) => `${s}: ${l.join(", ")}`).join("\n"),
      );
    }
    const present = [...bySource].map(([s, l]) => ({ src: s, mounted: l[0] }));
    const toHash = opts.full ? present : this.rng.sample(present, this.opts.sample ?? 40);
    const hashes = await sha256Mounted(toHash.map((p) => p.mounted));
    const bad: string[] = [];
    for (const p of toHash) {
      const got = hashes.get(p.mounted);
      if (got !== this.good.get(p.src)!.sha) bad.push(`${p.mounted}: ${got ?? "unreadable"}`);
    }
    if (bad.length) {
      this.violation(
        `${bad.length} of ${toHash.length} mounted files differ from their source`,
        bad.slice(0, 5).join("\n") + "\n" + tail(d.stderr, 20),
      );
    }
    // The search index holds every track once it has loaded.
    try {
      await waitFor(async () => {
        status = await d.getStatus();
        return status.search.state === "ready" && status.search.documents === want;
      }, 15_000);
    } catch {
      this.violation(
        `search is ${status.search.state} with ${status.search.documents} documents, want ${want}`,
      );
    }
    const words = (await this.searchSome()) || (await this.searchSome());
    if (!words) this.violation("/.search does not answer");
    return this.stats.violations.length === before;
  }

  /**
   * Invariants after a clean stop: no mount, no pid files or socket, no temp files; the
   * offline check says every store is healthy; SQLite and the search snapshot hold every
   * good file.
   */
  async checkOffline(opts: { stateDir?: string } = {}): Promise<boolean> {
    const before = this.stats.violations.length;
    const state = opts.stateDir ?? this.state;
    if (await isMounted(this.mnt)) this.violation("a mount is left at the mountpoint");
    // Leftovers.
    const leftovers: string[] = [];
    const corrupt: string[] = [];
    for (const dir of [state, this.cache]) {
      for await (const p of walkFiles(dir)) {
        const name = p.slice(p.lastIndexOf("/") + 1);
        const rel = p.slice(dir.length + 1);
        if (
          // `<name>.pid.lock` is the lock's persistent flock guard, not a leftover.
          /\.tmp|tmp-|\.part$|\.pid$|\.sock$/.test(name) || rel.startsWith("tmp/") ||
          name === "library.db-wal" || name === "library.db-shm"
        ) {
          leftovers.push(p);
        }
        // One set-aside database is up to three files (with its -wal and -shm).
        if (name.startsWith("library.db.corrupt-")) corrupt.push(p.replace(/-(wal|shm)$/, ""));
      }
    }
    // -wal/-shm may legitimately remain empty after a TRUNCATE checkpoint.
    const real: string[] = [];
    for (const p of leftovers) {
      if (/library\.db-(wal|shm)$/.test(p)) {
        const st = await Deno.stat(p).catch(() => null);
        if (!st || st.size === 0 || p.endsWith("-shm")) continue;
      }
      real.push(p);
    }
    if (real.length) this.violation("files left behind after a clean stop", real.join("\n"));
    const setAside = new Set(corrupt).size;
    if (setAside > 3) {
      this.violation(`${setAside} library.db.corrupt-* databases kept (at most 3)`);
    }
    // The offline check.
    const check = await offlineCheck(state, this.cache);
    if (!check.ok) this.violation(`offline check (${check.how}) reports damage`, check.detail);
    // Nothing committed is missing: SQLite and the snapshot hold every good file.
    let generation: number | undefined;
    try {
      const db = Database.openWithIntegrityCheck(`${state}/library.db`, { readOnly: true });
      try {
        generation = db.generation;
        const n = db.allTracks().length;
        if (n !== this.good.size) {
          this.violation(`library.db holds ${n} tracks, ${this.good.size} good files exist`);
        }
      } finally {
        db.close();
      }
    } catch (e) {
      this.violation("library.db does not open after a clean stop", String(e));
    }
    try {
      const h = await inspectSnapshot(`${state}/search.db`, { generation });
      if (h.documentCount !== this.good.size) {
        this.violation(
          `the search index holds ${h.documentCount} documents, want ${this.good.size}`,
        );
      }
    } catch (e) {
      this.violation("the search index is not current after a clean stop", String(e));
    }
    return this.stats.violations.length === before;
  }
}

// ---------------------------------------------------------------------------------------------
// Offline check: `musicfs check` once the CLI has it, else the same checks done here

let cliHasCheck: boolean | undefined;

/** Verify the stores offline; `how` says whether the CLI or the fallback did it. */
export async function offlineCheck(
  state: string,
  cache: string,
): Promise<{ ok: boolean; how: string; detail: string }> {
  if (cliHasCheck !== false) {
    const r = await musicfs(["check", "--state-dir", state, "--cache-dir", cache], {
      timeoutMs: 120_000,
    });
    if (/unknown command|error: unknown/i.test(r.stderr)) {
      cliHasCheck = false;
    } else {
      cliHasCheck = true;
      return { ok: r.code === 0, how: "musicfs check", detail: (r.stdout + r.stderr).trim() };
    }
  }
  const problems: string[] = [];
  let generation: number | undefined;
  try {
    const db = Database.openWithIntegrityCheck(`${state}/library.db`, { readOnly: true });
    generation = db.generation;
    db.close();
  } catch (e) {
    problems.push(`library.db: ${e}`);
  }
  try {
    await inspectSnapshot(`${state}/search.db`, { generation });
  } catch (e) {
    problems.push(`search index: ${e}`);
  }
  const idx = await checkIndex(`${cache}/index`);
  if (idx.status === "damaged") problems.push(`chunk index: ${idx.reason}`);
  for await (const p of walkFiles(`${cache}/chunks`)) {
    const name = p.slice(p.lastIndexOf("/") + 1);
    if (!/^[0-9a-f]{64}$/.test(name)) continue;
    const got = await sha256File(p);
    if (got !== name) problems.push(`chunk ${p}: hash ${got}`);
  }
  return { ok: problems.length === 0, how: "fallback", detail: problems.join("\n") };
}

// ---------------------------------------------------------------------------------------------
// Utilities

/** sha256 of a file outside the mount. */
export async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

/** sha256 of mounted files, by a `sha256sum` child (in batches); unreadable files are absent. */
export async function sha256Mounted(paths: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const batches: string[][] = [];
  for (let i = 0; i < paths.length; i += 200) batches.push(paths.slice(i, i + 200));
  await pool(batches, 2, async (batch) => {
    const r = await run(["timeout", String(SHA_TIMEOUT_S), "sha256sum", "-z", "--", ...batch]);
    // -z: NUL-terminated lines "<hash>  <name>".
    for (const line of r.stdout.split("\0")) {
      const m = /^\\?([0-9a-f]{64}) [ *](.*)$/s.exec(line);
      if (m) out.set(m[2], m[1]);
    }
  });
  return out;
}

/** Every regular file under `dir` (none when it does not exist). */
export async function* walkFiles(dir: string): AsyncGenerator<string> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return;
  }
  for (const e of entries) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walkFiles(p);
    else yield p;
  }
}

/** Run `fn` over `items` with at most `n` at once. */
export async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The last `n` lines of `text`. */
export function tail(text: string, n: number): string {
  return text.split("\n").slice(-n).join("\n");
}

/**
 * Abort the FUSE connection of the mount at `mountpoint` (only that one: other mounts on this
 * machine are not ours): the last resort when a mount hangs. Then detach it.
 */
export async function abortFuseAt(mountpoint: string): Promise<void> {
  const info = await Deno.readTextFile("/proc/self/mountinfo");
  for (const line of info.split("\n")) {
    const f = line.split(" ");
    if (f[4]?.replace(/\\040/g, " ") !== mountpoint || !line.includes(" - fuse")) continue;
    const minor = f[2].split(":")[1];
    await run([
      "sh",
      "-c",
      `mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null; ` +
      `echo 1 > /sys/fs/fuse/connections/${minor}/abort`,
    ]);
  }
  await detachIfMounted(mountpoint);
}

/** Fill the filesystem of `path` (a file written until ENOSPC). */
export async function fill(path: string): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true });
  try {
    const block = new Uint8Array(4096).fill(0x55);
    for (;;) await f.write(block);
  } catch {
    // ENOSPC: full.
  } finally {
    f.close();
  }
}

/** Mount a `size` tmpfs at `path` (created when missing): a small disk to fill. Root only. */
export async function mountTmpfs(path: string, size: string): Promise<void> {
  await Deno.mkdir(path, { recursive: true });
  const m = await run(["mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", path]);
  if (m.code !== 0) throw new Error(`mount tmpfs at ${path}: ${m.stderr}`);
}
