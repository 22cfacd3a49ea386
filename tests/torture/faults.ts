/**
 * The faults the torture injects: crash rounds (SIGKILL at a random moment of real work), the
 * corruption matrix (every store damaged in every way the issue lists), and a full disk under
 * the state dir. Each is followed by a restart and the invariants of harness.ts.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { isMounted, run, waitFor } from "../support/helpers.ts";
import { sleep, tail, type Torture, walkFiles } from "./harness.ts";

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

/** Rewrite the search snapshot's generation with a valid checksum (a stale snapshot). */
async function staleSnapshot(path: string): Promise<void> {
  const bytes = await Deno.readFile(path);
  const view = new DataView(bytes.buffer);
  const gen = view.getBigUint64(24, true);
  view.setBigUint64(24, gen > 0n ? gen - 1n : gen + 1n, true);
  const digest = createHash("sha256").update(bytes.subarray(72)).update(bytes.subarray(0, 40))
    .digest();
  bytes.set(digest, 40);
  await Deno.writeFile(path, bytes);
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
  // search snapshot
  {
    name: "search snapshot: garbage",
    async inject(t) {
      const p = `${t.state}/search.snapshot`;
      const size = await sizeOf(p);
      await overwrite(p, t.rng.int(0, Math.max(0, size - 512)), t.rng.bytes(512));
    },
  },
  {
    name: "search snapshot: truncated",
    async inject(t) {
      const p = `${t.state}/search.snapshot`;
      await truncate(p, t.rng.int(0, (await sizeOf(p)) - 1));
    },
  },
  {
    name: "search snapshot: wrong version",
    async inject(t) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, 999, true);
      await overwrite(`${t.state}/search.snapshot`, 8, b);
    },
  },
  {
    name: "search snapshot: stale generation",
    async inject(t) {
      await staleSnapshot(`${t.state}/search.snapshot`);
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

/** Fill the filesystem of `path` (a file written until ENOSPC). */
async function fill(path: string): Promise<void> {
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

/**
 * The state dir on a small tmpfs that fills up during a scan: the daemon keeps serving and
 * says so in its log; after space is freed, POST /rescan completes the scan. Root only.
 */
export async function fullDisk(t: Torture): Promise<void> {
  t.step = "full disk (state dir)";
  if (t.daemon) await t.stopClean();
  const state = `${t.dirs.root}/fullstate`;
  await Deno.mkdir(state, { recursive: true });
  const m = await run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", state]);
  if (m.code !== 0) throw new Error(`mount tmpfs: ${m.stderr}`);
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
