/**
 * The faults the torture injects: crash rounds (SIGKILL at a random moment of real work), the
 * corruption matrix (every store damaged in every way the issue lists), and a full disk under
 * the state dir. Each is followed by a restart and the invariants of harness.ts.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { encodeTrack } from "../fixtures/mod.ts";
import { getXattr, isMounted, run, waitFor } from "../support/helpers.ts";
import { type DaemonProcess, detachIfMounted, startDaemon } from "../support/daemon.ts";
import {
  fill,
  mountTmpfs,
  offlineCheck,
  sha256Mounted,
  sleep,
  tail,
  type Torture,
  walkFiles,
} from "./harness.ts";

// ---------------------------------------------------------------------------------------------
// Crash loop

/**
 * One crash round: the daemon (started when none runs) works for a random while and is
 * SIGKILLed at a random moment; it is restarted (over its dead mount) and checked. Leaves the
 * restarted daemon running.
 */
export async function crashRound(
  t: Torture,
  round: number,
  opts: { full?: boolean } = {},
): Promise<void> {
  t.step = `crash round ${round}`;
  if (!t.daemon) await t.start();
  const workMs = t.rng.int(300, 4000);
  const killAt = t.rng.int(0, workMs);
  t.log(`${t.step}: work ${workMs} ms, SIGKILL at ${killAt} ms`);
  await t.work(workMs, killAt);
  if (t.daemon) await t.crash(); // work ended before the kill fired (never, but be sure)
  // Sometimes the source changes while nothing watches.
  if (t.rng.chance(0.3)) await t.addSource();
  if (t.rng.chance(0.2)) await t.removeSource();
  await t.restart();
  const ok = await t.checkOnline({ full: opts.full });
  t.stats.rounds++;
  if (ok) t.stats.recoveries++;
}

// ---------------------------------------------------------------------------------------------
// Corruption matrix

const PAGE = 4096;

/** One case of the corruption matrix: `inject` runs with no daemon running. */
export interface CorruptionCase {
  name: string;
  /** Damage the stores (the daemon is stopped; the state is healthy). */
  inject(t: Torture): Promise<void>;
  /** Hash every mounted file afterwards (chunk cases: the damaged chunk must be read). */
  full?: boolean;
}

async function overwrite(path: string, offset: number, bytes: Uint8Array): Promise<void> {
  const f = await Deno.open(path, { write: true });
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    let off = 0;
    while (off < bytes.length) off += await f.write(bytes.subarray(off));
  } finally {
    f.close();
  }
}

async function truncate(path: string, size: number): Promise<void> {
  await Deno.truncate(path, size);
}

async function sizeOf(path: string): Promise<number> {
  return (await Deno.stat(path)).size;
}

/**
 * A random chunk file of the cache that a good file uses (a small file is one chunk, named by
 * the file's SHA-256), so the reads that follow must meet the damage. A damaged chunk nothing
 * references (e.g. of a removed file) is never read, so the daemon never finds it: only
 * `musicfs check --repair` does. Throws when nothing was cached.
 */
async function someChunk(t: Torture): Promise<string> {
  const chunks: string[] = [];
  for await (const p of walkFiles(`${t.cache}/chunks`)) chunks.push(p);
  if (!chunks.length) throw new Error("no chunk file to damage: nothing was cached");
  chunks.sort();
  const used = new Set([...t.good.values()].map((g) => g.sha));
  const referenced = chunks.filter((p) => used.has(p.slice(p.lastIndexOf("/") + 1)));
  return t.rng.pick(referenced.length ? referenced : chunks);
}

/** Start a daemon, make it write (a new source file and a rescan), then SIGKILL it. */
async function crashMidWrite(t: Torture): Promise<void> {
  await t.start();
  await t.addSource();
  await t.daemon!.control("POST", "/rescan").catch(() => {});
  await t.daemon!.waitScanDone(60_000).catch(() => {});
  await t.crash();
  t.stats.crashes--; // counted as the corruption it prepares, not as a crash round
}

/** A pid that is certainly dead: a child that has exited. */
async function deadPid(): Promise<number> {
  const c = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
  await c.status;
  return c.pid;
}

/** Move the search index's stamped generation off library.db's (a stale index). */
function staleSearchIndex(path: string): void {
  const db = new DatabaseSync(path);
  try {
    db.exec(
      "UPDATE meta SET value = CASE WHEN value > 0 THEN value - 1 ELSE 1 END WHERE key = 'generation'",
    );
  } finally {
    db.close();
  }
}

/** Every case of the matrix, in a fixed order. */
export const CORRUPTIONS: CorruptionCase[] = [
  // library.db
  {
    name: "library.db: garbage pages",
    async inject(t) {
      const p = `${t.state}/library.db`;
      const pages = Math.floor((await sizeOf(p)) / PAGE);
      for (let i = 0; i < Math.max(1, Math.floor(pages / 4)); i++) {
        await overwrite(p, t.rng.int(1, Math.max(1, pages - 1)) * PAGE, t.rng.bytes(PAGE));
      }
    },
  },
  {
    name: "library.db: truncated",
    async inject(t) {
      const p = `${t.state}/library.db`;
      await truncate(p, Math.floor((await sizeOf(p)) / PAGE / 2) * PAGE + 100);
    },
  },
  {
    name: "library.db: -wal and -shm deleted after a crash",
    async inject(t) {
      await crashMidWrite(t);
      await Deno.remove(`${t.state}/library.db-wal`).catch(() => {});
      await Deno.remove(`${t.state}/library.db-shm`).catch(() => {});
    },
  },
  {
    name: "library.db: a foreign file",
    async inject(t) {
      await Deno.remove(`${t.state}/library.db-wal`).catch(() => {});
      await Deno.remove(`${t.state}/library.db-shm`).catch(() => {});
      await Deno.writeTextFile(
        `${t.state}/library.db`,
        "# not a database\n".repeat(500),
      );
    },
  },
  // search index (search.db, SQLite FTS5)
  {
    name: "search index: garbage",
    async inject(t) {
      const p = `${t.state}/search.db`;
      const size = await sizeOf(p);
      await overwrite(p, t.rng.int(0, Math.max(0, size - 512)), t.rng.bytes(512));
    },
  },
  {
    name: "search index: truncated",
    async inject(t) {
      const p = `${t.state}/search.db`;
      await truncate(p, t.rng.int(0, (await sizeOf(p)) - 1));
    },
  },
  {
    name: "search index: wrong version",
    async inject(t) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, 999);
      // SQLite's user_version, big-endian at offset 60 of the header.
      await overwrite(`${t.state}/search.db`, 60, b);
    },
  },
  {
    name: "search index: stale generation",
    inject(t) {
      staleSearchIndex(`${t.state}/search.db`);
      return Promise.resolve();
    },
  },
  // LMDB index
  {
    name: "LMDB index: zeroed meta pages",
    async inject(t) {
      await overwrite(`${t.cache}/index/data.mdb`, 0, new Uint8Array(2 * PAGE));
    },
  },
  {
    name: "LMDB index: random page",
    async inject(t) {
      const p = `${t.cache}/index/data.mdb`;
      const pages = Math.floor((await sizeOf(p)) / PAGE);
      await overwrite(p, t.rng.int(2, Math.max(2, pages - 1)) * PAGE, t.rng.bytes(PAGE));
    },
  },
  {
    name: "LMDB index: truncated to 0",
    async inject(t) {
      await truncate(`${t.cache}/index/data.mdb`, 0);
    },
  },
  {
    name: "LMDB index: truncated to half",
    async inject(t) {
      const p = `${t.cache}/index/data.mdb`;
      await truncate(p, Math.floor((await sizeOf(p)) / 2));
    },
  },
  {
    name: "LMDB index: deleted",
    async inject(t) {
      await Deno.remove(`${t.cache}/index`, { recursive: true });
    },
  },
  // chunk files
  {
    name: "chunk file: bit flip",
    full: true,
    async inject(t) {
      const p = await someChunk(t);
      const b = await Deno.readFile(p);
      const i = t.rng.int(0, b.length - 1);
      b[i] ^= 1 << t.rng.int(0, 7);
      await Deno.writeFile(p, b);
    },
  },
  {
    name: "chunk file: truncated",
    full: true,
    async inject(t) {
      const p = await someChunk(t);
      await truncate(p, Math.floor((await sizeOf(p)) / 2));
    },
  },
  {
    name: "chunk file: deleted",
    full: true,
    async inject(t) {
      await Deno.remove(await someChunk(t));
    },
  },
  // lock
  {
    name: "stale lock and pid file of a dead process",
    async inject(t) {
      const pid = await deadPid();
      await Deno.writeTextFile(`${t.state}/musicfs.pid`, `${pid}\n12345\n`);
      await Deno.mkdir(t.cache, { recursive: true });
      await Deno.writeTextFile(`${t.cache}/musicfs.pid`, `${pid}\n12345\n`);
    },
  },
  // mount
  {
    name: "dead FUSE mount left at the mountpoint",
    async inject(t) {
      await t.start();
      await t.crash();
      t.stats.crashes--;
      if (!(await isMounted(t.mnt))) throw new Error("SIGKILL left no dead mount to test with");
      const r = await run(["timeout", "5", "ls", t.mnt]);
      if (!/not connected/i.test(r.stderr)) {
        throw new Error(`the mount left is not dead: ${r.code} ${r.stderr}`);
      }
    },
  },
];

/**
 * Run one corruption case: from a clean stop, inject, restart, check online (hashing all files
 * for chunk cases), stop cleanly, check offline. Leaves no daemon running.
 */
export async function corruptionCase(t: Torture, c: CorruptionCase): Promise<void> {
  t.step = `corruption "${c.name}"`;
  if (t.daemon) await t.stopClean();
  t.log(`${t.step}: inject`);
  await c.inject(t);
  t.stats.corruptions++;
  await t.restart();
  let online = await t.checkOnline({ full: c.full });
  if (c.full) {
    // The damaged chunk may be a cover's: read every mounted file once more, so it is read.
    const files = (await t.listMounted()) ?? [];
    const r = await run(["sh", "-c", 'timeout 120 cat -- "$@" > /dev/null', "sh", ...files]);
    if (r.code !== 0) {
      t.violation("reading every mounted file failed", r.stderr.slice(0, 2000));
      online = false;
    }
  }
  // Let the prefetcher/cache settle what the reads started before the clean stop.
  await t.stopClean();
  const offline = await t.checkOffline();
  if (online && offline) t.stats.recoveries++;
}

/** Make sure the cache holds chunks (reads every track once through the running daemon). */
export async function warmCache(t: Torture): Promise<void> {
  const files = (await t.listMounted()) ?? [];
  await run(["sh", "-c", 'timeout 120 cat -- "$@" > /dev/null', "sh", ...files]);
  await waitFor(
    async () => ((await t.daemon!.getStatus()).cache?.chunks ?? 0) > 0,
    15_000,
    "chunks in the cache",
  ).catch(() => t.violation("reading every track stored no chunk in the cache"));
}

// ---------------------------------------------------------------------------------------------
// Full disk

/**
 * The state dir on a small tmpfs that fills up during a scan: the daemon keeps serving and
 * says so in its log; after space is freed, POST /rescan completes the scan. Root only.
 */
export async function fullDisk(t: Torture): Promise<void> {
  t.step = "full disk (state dir)";
  if (t.daemon) await t.stopClean();
  const state = `${t.dirs.root}/fullstate`;
  await mountTmpfs(state, "2m");
  try {
    const d = await t.start({ stateDir: state });
    await d.waitScanDone(60_000);
    // The disk fills up; new source files arrive and a scan runs into it.
    await fill(`${state}/filler`);
    t.stats.corruptions++;
    for (let i = 0; i < 30; i++) await t.addSource();
    await d.control("POST", "/rescan").catch(() => {});
    await d.waitScanDone(15_000).catch(() => {});
    await sleep(500);
    const ls = await run(["timeout", "10", "ls", `${t.mnt}/Artists`]);
    if (ls.code !== 0) t.violation("the mount stopped answering on a full state dir", ls.stderr);
    const status = await d.getStatus().catch((e) => {
      t.violation("the control API stopped answering on a full state dir", String(e));
      return undefined;
    });
    if (d.exitStatus) t.violation("the daemon exited on a full state dir", tail(d.stderr, 30));
    t.log(`full disk: ${status?.tracks} tracks served, scan ${JSON.stringify(status?.scan)}`);
    t.log(d.stderr.split("\n").filter((l) => /\[(WRN|ERR|FTL)\]/.test(l)).slice(-8).join("\n"));
    if (!/disk is full|no space left|ENOSPC|SQLITE_FULL/i.test(d.stderr)) {
      t.violation("the full state dir is not reported in the log", tail(d.stderr, 15));
    }
    // Free the space; a rescan completes the library.
    await Deno.remove(`${state}/filler`);
    await waitFor(async () => {
      const r = await d.control("POST", "/rescan").catch(() => null) as
        | { started?: boolean }
        | null;
      return !!r?.started;
    }, 30_000).catch(() => t.violation("POST /rescan never started a scan after space was freed"));
    const online = await t.checkOnline();
    await t.stopClean();
    const offline = await t.checkOffline({ stateDir: state });
    if (online && offline) t.stats.recoveries++;
  } finally {
    await t.shutdown();
    await run(["umount", "-l", state]);
  }
}

// ---------------------------------------------------------------------------------------------
// Full cache dir

/**
 * A FLAC track of about `bytes` bytes whose PADDING block is filled with random bytes, so its
 * 1 MiB chunks are unique (zero padding would deduplicate to one chunk and never fill a disk).
 */
function bigUniqueFlac(n: number, bytes: number): Uint8Array {
  const b = encodeTrack("flac", {
    artist: "Full Cache Artist",
    album: "Full Cache Album",
    title: `Full Cache Song ${n}`,
    track: n,
    year: 2001,
    genre: "Noise",
  }, { padBytes: bytes });
  // Walk the metadata blocks after "fLaC" to the PADDING block (type 1).
  let off = 4;
  for (;;) {
    const last = (b[off] & 0x80) !== 0;
    const type = b[off] & 0x7f;
    const len = (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3];
    if (type === 1) {
      const pad = b.subarray(off + 4, off + 4 + len);
      for (let i = 0; i < pad.length; i += 65536) {
        crypto.getRandomValues(pad.subarray(i, Math.min(i + 65536, pad.length)));
      }
      return b;
    }
    if (last) throw new Error("the FLAC fixture has no PADDING block");
    off += 4 + len;
  }
}

/**
 * The cache dir on a small tmpfs (4 MiB) that fills up while every track is read with
 * `--cache-reads always` and an LRU limit (64 MiB) bigger than the disk, so chunk writes fail
 * with ENOSPC instead of evicting: every read still returns the source's bytes, the daemon
 * keeps serving and logs the condition, no temp chunk file is left; once the tmpfs is
 * remounted bigger, reads are cached again. Root only.
 */
export async function fullCache(t: Torture, opts: { tracks: number }): Promise<void> {
  t.step = "full disk (cache dir)";
  const before = t.stats.violations.length;
  const base = `${t.dirs.root}/fullcache`;
  const lib = `${base}/lib`;
  const mnt = `${base}/mnt`;
  const cache = `${base}/cache`;
  for (const d of [lib, mnt, cache]) await Deno.mkdir(d, { recursive: true });
  const want = new Map<string, string>(); // source path -> sha256
  for (let n = 1; n <= opts.tracks; n++) {
    const p = `${lib}/${String(n).padStart(2, "0")} - Full Cache Song ${n}.flac`;
    const bytes = bigUniqueFlac(n, 2_500_000 + n * 1000);
    await Deno.writeFile(p, bytes);
    want.set(p, createHash("sha256").update(bytes).digest("hex"));
  }
  await mountTmpfs(cache, "4m");
  let d: DaemonProcess | undefined;
  try {
    d = await startDaemon({
      libraries: [lib],
      mountpoint: mnt,
      stateDir: `${base}/state`,
      cacheDir: cache,
      args: ["--cache-reads", "always", "--cache-size", "64M"],
      readyTimeoutMs: 60_000,
    });
    await d.waitScanDone(60_000);
    t.stats.corruptions++;
    // Every read returns the right bytes, before and after the disk fills up.
    const files = await sourcesByMounted(t, mnt);
    const readAll = async (what: string) => {
      const hashes = await sha256Mounted([...files.keys()]);
      const bad = [...files].filter(([f, src]) => hashes.get(f) !== want.get(src));
      if (bad.length) {
        t.violation(
          `${bad.length} of ${files.size} reads ${what} differ from their source`,
          bad.slice(0, 3).map(([f]) => `${f}: ${hashes.get(f) ?? "unreadable"}`).join("\n") +
            "\n" + tail(d!.stderr, 20),
        );
      }
      return files.size - bad.length;
    };
    if (files.size !== opts.tracks) {
      t.violation(`${files.size} tracks mounted, want ${opts.tracks}`, tail(d.stderr, 20));
    }
    let ok = await readAll("on a filling cache dir");
    ok += await readAll("on a full cache dir"); // chunks not stored must come from the origin
    const full = await d.getStatus().catch((e) => {
      t.violation("the control API stopped answering on a full cache dir", String(e));
      return undefined;
    });
    if (d.exitStatus) t.violation("the daemon exited on a full cache dir", tail(d.stderr, 30));
    const ls = await run(["timeout", "10", "ls", `${mnt}/Artists`]);
    if (ls.code !== 0) t.violation("the mount stopped answering on a full cache dir", ls.stderr);
    const enospc = d.stderr.split("\n").filter((l) => /no space left|ENOSPC/i.test(l));
    if (!enospc.length) {
      t.violation("the full cache dir is not reported in the log", tail(d.stderr, 15));
    }
    // Chunk stores run after the reads they serve: give the failures a moment to be counted.
    let reported: unknown = full?.cache;
    await waitFor(async () => {
      reported = (await d!.getStatus()).cache;
      return ((reported as { failedWrites?: number } | null)?.failedWrites ?? 0) > 0;
    }, 10_000).catch(() =>
      t.violation("the full cache dir is not reported in status", JSON.stringify(reported))
    );
    t.log(`full cache: status cache ${JSON.stringify(full?.cache)}; ${enospc.length} log lines`);
    t.log(enospc.slice(-3).join("\n"));
    // No partial chunk file is left.
    const temps: string[] = [];
    for await (const p of walkFiles(cache)) {
      if (/\.tmp$|\.part$|tmp-/.test(p) || p.startsWith(`${cache}/tmp/`)) temps.push(p);
    }
    if (temps.length) t.violation("temp chunk files left on a full cache dir", temps.join("\n"));
    // Free space: remount bigger; further reads are cached again.
    const chunksFull = full?.cache?.chunks ?? 0;
    const r = await run(["mount", "-o", "remount,size=64m", cache]);
    if (r.code !== 0) throw new Error(`remount tmpfs: ${r.stderr}`);
    ok += await readAll("after space was freed");
    let chunksAfter = chunksFull;
    await waitFor(async () => {
      chunksAfter = (await d!.getStatus()).cache?.chunks ?? 0;
      return chunksAfter > chunksFull;
    }, 15_000).catch(() =>
      t.violation(
        `reads after space was freed cached nothing (${chunksAfter} chunks)`,
        tail(d!.stderr, 15),
      )
    );
    t.stats.extras.push([
      "full cache dir: reads right / made",
      `${ok} / ${files.size * 3}`,
    ]);
    t.stats.extras.push([
      "full cache dir: ENOSPC log lines, chunks full -> freed",
      `${enospc.length}, ${chunksFull} -> ${chunksAfter}`,
    ]);
    // A clean stop, no mount left.
    const dd = d;
    d = undefined;
    dd.kill("SIGTERM");
    const st = await dd.waitExit(20_000).catch(() => undefined);
    if (!st) {
      t.violation("the daemon ignored SIGTERM for 20 s", tail(dd.stderr, 40));
      await dd.stop(1000);
    } else if (st.code !== 0) {
      t.violation(`clean stop exited with code ${st.code}`, tail(dd.stderr, 40));
    }
    if (await isMounted(mnt)) t.violation("a mount was left behind after a clean stop");
    const check = await offlineCheck(`${base}/state`, cache);
    if (!check.ok) {
      t.violation(
        `offline check (${check.how}) reports damage after a full cache dir`,
        check.detail,
      );
    }
    if (t.stats.violations.length === before) t.stats.recoveries++;
  } finally {
    if (d) await d.stop(15_000);
    await detachIfMounted(mnt);
    await run(["umount", "-l", cache]);
  }
}

/** Mounted file -> source path (xattr) of every file under `<mnt>/Artists`. */
async function sourcesByMounted(t: Torture, mnt: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const r = await run(["timeout", "30", "find", `${mnt}/Artists`, "-type", "f", "-print0"]);
  if (r.code !== 0) {
    t.violation("find under /Artists failed", r.stderr);
    return out;
  }
  for (const f of r.stdout.split("\0").filter(Boolean)) {
    const s = await getXattr(f, "user.musicfs.source");
    if (s !== null) out.set(f, s);
  }
  return out;
}
