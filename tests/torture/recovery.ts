/**
 * The recovery torture (issue 12): faults the user must always get out of, each run against
 * the real daemon with its invariants checked and every step bounded (over 30 s is a
 * violation):
 *
 * - undetected library.db damage: 16 random bit flips, repeated; the integrity check catches
 *   what would be served wrong, and the mount never serves a wrong source;
 * - fd exhaustion: the daemon under `prlimit --nofile=128:128`, 100 concurrent opens; the control
 *   API keeps answering, EMFILE is logged with counts, opens work again afterwards;
 * - SIGSTOP plus `musicfs unmount --force`: blocked readers return, the mount goes, `status`
 *   names the way out, `search` answers offline, the continued daemon exits and detaches;
 * - the FUSE connection aborted through fusectl alone: the daemon detaches before it exits;
 * - concurrent /.search listings: 200 queries from 4 threads, 0 ENOENT;
 * - the library root renamed away: opens answer EIO at once, not ENOENT;
 * - a broken state dir (control socket path is a directory: the background mount fails and
 *   stops its daemon) and full ones (fresh state on a tiny tmpfs: the scan is retried until it
 *   completes; existing state on a full disk: served read-only, then written again once there
 *   is space). Root only for the tmpfs.
 *
 * @module
 */
import { controlSocketPath, readLock } from "../../src/daemon/mod.ts";
import { findFuseMount, FUSECTL_DIR } from "../../src/fuse/mod.ts";
import { Database, type TrackRecord } from "../../src/library/mod.ts";
import { isMounted, run, waitFor } from "../support/helpers.ts";
import {
  type DaemonProcess,
  detachIfMounted,
  musicfs,
  musicfsArgv,
  startDaemon,
} from "../support/daemon.ts";
import {
  abortFuseAt,
  fill,
  mountTmpfs,
  sha256Mounted,
  sleep,
  tail,
  type Torture,
} from "./harness.ts";

/** Every step of this file is bounded by this: longer is a violation. */
const STEP_MS = 30_000;

/** Options of {@link recovery}. */
export interface RecoveryOptions {
  /** Trials of 16 random bit flips in library.db. */
  dbTrials: number;
  /** Passes of the 4 listing threads over the 200 /.search queries. */
  searchPasses: number;
}

/** Run `fn` as one bounded step: over `ms` is a violation (the step is still awaited). */
async function step<T>(t: Torture, what: string, fn: () => Promise<T>, ms = STEP_MS): Promise<T> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let late = false;
  const watchdog = new Promise<void>((r) => {
    timer = setTimeout(() => {
      late = true;
      r();
    }, ms);
  });
  try {
    const result = fn();
    await Promise.race([result.catch(() => {}), watchdog]);
    if (late) t.violation(`${what} took over ${ms / 1000} s`);
    return await result;
  } finally {
    clearTimeout(timer);
    t.log(`${t.step}: ${what} in ${Math.round(performance.now() - started)} ms`);
  }
}

/** All the recovery cases, in order; leaves no daemon of its own running. */
export async function recovery(t: Torture, opts: RecoveryOptions): Promise<void> {
  await dbDamage(t, { trials: opts.dbTrials });
  await stopAndForce(t);
  await abortOnly(t);
  await searchListings(t, { passes: opts.searchPasses });
  await fdExhaustion(t, { opens: 100 });
  await brokenStateDir(t);
  await vanishedRoot(t);
  if (Deno.uid() === 0) {
    await tinyStateDir(t);
    await fullStateDir(t);
  }
}

// ---------------------------------------------------------------------------------------------
// Undetected library.db damage

/** The fields that decide which source a mounted file serves. */
const identity = (r: TrackRecord) => `${r.id}|${r.originId}|${r.relPath}|${r.size}|${r.ext}`;
/** Everything a row says (names in the tree come from the tags). */
const everything = (r: TrackRecord) => JSON.stringify(r);

function tracksOf(path: string): TrackRecord[] | undefined {
  try {
    const db = Database.open(path, { readOnly: true });
    try {
      return db.allTracks();
    } finally {
      db.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * Trials of 16 random bit flips in a stopped daemon's library.db. `musicfs check` must call
 * the file damaged whenever its rows no longer name the same sources; the daemon started on it
 * must set it aside in that case, and serve every good file exactly once with its bytes in all
 * cases. Flips that change only tag text (which no SQLite check covers) are counted.
 */
export async function dbDamage(t: Torture, opts: { trials: number }): Promise<void> {
  t.step = "db damage";
  const counts = { caught: 0, harmless: 0, tagsOnly: 0, served: 0 };
  const db = `${t.state}/library.db`;
  for (let trial = 1; trial <= opts.trials; trial++) {
    t.step = `db damage ${trial}`;
    if (!t.daemon) await t.start();
    await t.daemon!.waitScanDone(60_000);
    await t.stopClean();
    const before = tracksOf(db);
    if (!before) {
      t.violation("library.db does not open after a clean stop");
      return;
    }
    const bytes = await Deno.readFile(db);
    for (let i = 0; i < 16; i++) {
      const bit = t.rng.int(0, bytes.length * 8 - 1);
      bytes[bit >> 3] ^= 1 << (bit & 7);
    }
    await Deno.writeFile(db, bytes);
    t.stats.corruptions++;
    const check = await step(
      t,
      "musicfs check",
      () =>
        musicfs(["check", "--state-dir", t.state, "--cache-dir", t.cache], { timeoutMs: 60_000 }),
    );
    const line = check.stdout.split("\n").find((l) => l.startsWith("library.db")) ?? "";
    const damaged = / damaged /.test(line);
    const after = damaged ? undefined : tracksOf(db);
    const sameSources = after !== undefined &&
      after.map(identity).join("\n") === before.map(identity).join("\n");
    const same = sameSources && after!.map(everything).join("\n") === before.map(everything)
          .join("\n");
    if (damaged) counts.caught++;
    else if (same) counts.harmless++;
    else if (sameSources) counts.tagsOnly++;
    else {
      counts.served++;
      t.violation(`16 bit flips changed the stored sources and musicfs check says: ${line}`);
    }
    const d = await step(t, "start on the damaged state", () => t.restart());
    if (damaged && !/library\.db was damaged/.test(d.stderr)) {
      t.violation("the daemon started on a damaged library.db without setting it aside");
    }
    if (await step(t, "the online invariants", () => t.checkOnline(), 180_000)) {
      t.stats.recoveries++;
    }
    await t.stopClean();
  }
  t.stats.extras.push([
    `library.db, 16 random bit flips x ${opts.trials}: caught / harmless / tag text only / wrong`,
    `${counts.caught} / ${counts.harmless} / ${counts.tagsOnly} / ${counts.served}`,
  ]);
}

// ---------------------------------------------------------------------------------------------
// SIGSTOP plus unmount --force

/**
 * The daemon is stopped with SIGSTOP while readers use the mount: `musicfs status` answers
 * with the way out, `musicfs search` answers from the state dir, `musicfs unmount --force`
 * frees every reader and removes the mount; continued, the daemon exits and leaves nothing.
 */
export async function stopAndForce(t: Torture): Promise<void> {
  t.step = "SIGSTOP + unmount --force";
  if (!t.daemon) await t.start();
  const d = t.daemon!;
  await d.waitScanDone(60_000);
  const files = (await t.listMounted()) ?? [];
  d.kill("SIGSTOP");
  let continued = false;
  try {
    // Readers that need the daemon: fresh /.search names and reads of the tracks.
    const started = performance.now();
    const readers = [
      run(["timeout", "60", "ls", `${t.mnt}/.search/stopped ${t.rng.int(0, 1e9)}`]),
      run(["timeout", "60", "ls", `${t.mnt}/Albums`]),
      ...t.rng.sample(files, 3).map((f) => run(["timeout", "60", "sha256sum", "--", f])),
    ];
    await sleep(300);
    const status = await step(
      t,
      "musicfs status on a stopped daemon",
      () => musicfs(["status", "--state-dir", t.state]),
    );
    if (status.code !== 1 || !/musicfs unmount --force/.test(status.stderr)) {
      t.violation("status on a stopped daemon does not name unmount --force", status.stderr);
    }
    const search = await step(
      t,
      "musicfs search on a stopped daemon",
      () => musicfs(["search", "--state-dir", t.state, "song"]),
    );
    if (search.code !== 0 || !/answering from the state dir/.test(search.stderr)) {
      t.violation("search on a stopped daemon did not answer offline", search.stderr);
    }
    const forced = performance.now();
    const force = await step(
      t,
      "musicfs unmount --force",
      () => musicfs(["unmount", "--force", t.mnt, "--state-dir", t.state]),
    );
    if (force.code !== 0) t.violation("unmount --force failed", force.stdout + force.stderr);
    const results = await step(t, "the blocked readers to return", () => Promise.all(readers));
    const freedMs = Math.round(performance.now() - forced);
    if (results.some((r) => r.code === 124)) t.violation("a reader hung after unmount --force");
    if (await isMounted(t.mnt)) t.violation("unmount --force left the mount");
    d.kill("SIGCONT");
    continued = true;
    const st = await step(t, "the continued daemon to exit", () => d.waitExit(STEP_MS));
    t.daemon = undefined;
    if (st.code !== 0) t.violation(`the aborted daemon exited with ${st.code}`, tail(d.stderr, 20));
    if (await isMounted(t.mnt)) t.violation("the aborted daemon left a mount");
    t.stats.extras.push([
      "SIGSTOP + unmount --force: readers freed / status, force times",
      `${results.length} of ${results.length} in ${freedMs} ms / ${
        Math.round(forced - started)
      } ms before`,
    ]);
  } finally {
    if (!continued) d.kill("SIGCONT");
    if (t.daemon === d && d.exitStatus) t.daemon = undefined;
    await detachIfMounted(t.mnt);
  }
  await step(t, "restart after the abort", () => t.restart());
  if (await t.checkOnline()) t.stats.recoveries++;
}

/**
 * The FUSE connection is aborted through fusectl and nothing else (as a user or an admin
 * script may do): the daemon shuts down in order and detaches the dead mount before it
 * exits, so the mountpoint is usable again at once.
 */
export async function abortOnly(t: Torture): Promise<void> {
  t.step = "fusectl abort";
  if (!t.daemon) await t.start();
  const d = t.daemon!;
  const mount = findFuseMount(t.mnt);
  if (!mount) {
    t.violation("no FUSE mount to abort");
    return;
  }
  const minor = mount.device.split(":")[1];
  await run([
    "sh",
    "-c",
    `mountpoint -q ${FUSECTL_DIR} || mount -t fusectl none ${FUSECTL_DIR}; ` +
    `echo 1 > ${FUSECTL_DIR}/${minor}/abort`,
  ]);
  const aborted = performance.now();
  const st = await step(t, "the aborted daemon to exit", () => d.waitExit(STEP_MS))
    .catch(() => undefined);
  t.daemon = undefined;
  const exitMs = Math.round(performance.now() - aborted);
  if (!st) {
    t.violation("the daemon did not exit after its connection was aborted", tail(d.stderr, 20));
    await d.stop(5000);
  } else if (st.code !== 0) {
    t.violation(`the aborted daemon exited with ${st.code}`, tail(d.stderr, 20));
  }
  const left = await isMounted(t.mnt);
  if (left) {
    t.violation("the aborted daemon left its dead mount (ENOTCONN)");
    await detachIfMounted(t.mnt);
  }
  t.stats.extras.push([
    "FUSE connection aborted (fusectl): daemon exit after / dead mount left",
    `${exitMs} ms / ${left ? "yes" : "no"}`,
  ]);
  await step(t, "restart after the abort", () => t.restart());
  if (await t.checkOnline()) t.stats.recoveries++;
}

// ---------------------------------------------------------------------------------------------
// /.search under concurrent use

const LISTER = `
import os, sys
root, passes = sys.argv[1], int(sys.argv[2])
queries = sys.argv[3:]
ok = enoent = other = 0
for _ in range(passes):
    for q in queries:
        try:
            os.listdir(os.path.join(root, q))
            ok += 1
        except FileNotFoundError:
            enoent += 1
        except OSError:
            other += 1
print(ok, enoent, other)
`;

/** 200 queries listed by 4 threads at once, `passes` times each: no listing may fail. */
export async function searchListings(t: Torture, opts: { passes: number }): Promise<void> {
  t.step = "/.search listings";
  if (!t.daemon) await t.start();
  const words = ["love", "night", "silver", "fox", "river", "song", "jazz", "rock", "blue", "sun"];
  const queries = Array.from({ length: 200 }, (_, i) => `${words[i % words.length]} ${i}`);
  const threads = await step(t, "4 threads listing 200 queries", () =>
    Promise.all(
      Array.from({ length: 4 }, () =>
        run([
          "timeout",
          "120",
          "python3",
          "-c",
          LISTER,
          `${t.mnt}/.search`,
          String(opts.passes),
          ...t.rng.sample(queries, queries.length),
        ])),
    ), 120_000);
  let ok = 0;
  let enoent = 0;
  let other = 0;
  for (const r of threads) {
    const [a, b, c] = r.stdout.trim().split(" ").map(Number);
    if (r.code !== 0 || [a, b, c].some((n) => !Number.isInteger(n))) {
      t.violation(`a listing thread failed (exit ${r.code})`, r.stderr);
      continue;
    }
    ok += a;
    enoent += b;
    other += c;
  }
  if (enoent || other) {
    t.violation(`/.search: ${enoent} ENOENT and ${other} other errors in ${ok + enoent} listings`);
  }
  t.stats.extras.push([
    "/.search: 200 queries, 4 threads: listings / ENOENT",
    `${ok + enoent + other} / ${enoent}`,
  ]);
}

// ---------------------------------------------------------------------------------------------
// fd exhaustion

const HOLDER = `
import sys, time
held, failed = [], 0
for f in sys.argv[2:]:
    try:
        held.append(open(f, "rb"))
    except OSError:
        failed += 1
print(len(held), failed, flush=True)
time.sleep(float(sys.argv[1]))
`;

/**
 * The daemon limited to 128 fds (soft and hard), `opens` tracks opened at once and held: the
 * opens past the limit fail with EMFILE, logged with counts; the control API keeps answering
 * throughout; once they are closed, tracks open and read right again.
 */
export async function fdExhaustion(t: Torture, opts: { opens: number }): Promise<void> {
  t.step = "fd exhaustion";
  if (t.daemon) await t.stopClean();
  const base = `${t.dirs.root}/fds`;
  const mnt = `${base}/mnt`;
  await Deno.mkdir(mnt, { recursive: true });
  // Below the daemon's minimum it refuses with one line (Deno itself aborts starting a worker).
  await step(t, "start refused under prlimit --nofile=64:64", async () => {
    const out = await run([
      "prlimit",
      "--nofile=64:64",
      "--",
      ...musicfsArgv(),
      "mount",
      t.lib,
      "--mountpoint",
      mnt,
      "--foreground",
      "--state-dir",
      `${base}/state-low`,
      "--cache-dir",
      `${base}/cache-low`,
    ]);
    const lines = out.stderr.trim().split("\n");
    if (out.code !== 1 || lines.length !== 1 || !/open files limit is 64/.test(lines[0])) {
      t.violation("a 64-fd limit was not refused with one line", `${out.code}: ${out.stderr}`);
    }
    if (await isMounted(mnt)) t.violation("the refused start left a mount", mnt);
  });
  let d: DaemonProcess | undefined;
  try {
    d = await step(t, "start under prlimit --nofile=128:128", () =>
      startDaemon({
        libraries: [t.lib],
        mountpoint: mnt,
        stateDir: `${base}/state`,
        cacheDir: `${base}/cache`,
        args: ["--cache-reads", "never"],
        wrap: ["prlimit", "--nofile=128:128", "--"],
        readyTimeoutMs: 60_000,
      }));
    await d.waitScanDone(60_000);
    const list = await run(["timeout", "30", "find", `${mnt}/Artists`, "-type", "f", "-print0"]);
    const files = list.stdout.split("\0").filter(Boolean);
    const picks = t.rng.sample(files, opts.opens);
    const holder = new Deno.Command("python3", {
      args: ["-c", HOLDER, "4", ...picks],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = holder.output();
    // While the opens are held: the control API answers.
    await sleep(1500);
    const asked = performance.now();
    const status = await d.getStatus(5000).catch((e) => {
      t.violation("the control API did not answer while fds were exhausted", String(e));
      return undefined;
    });
    const answerMs = Math.round(performance.now() - asked);
    const out = await step(t, "the held opens", () => output);
    const [held, failed] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
    if (!(held > 0) || held + failed !== picks.length) {
      t.violation("the opens did not run", new TextDecoder().decode(out.stderr));
    }
    if (failed && !/Out of file descriptors: \d+ source opens refused/.test(d.stderr)) {
      t.violation("EMFILE was not logged with counts", tail(d.stderr, 10));
    }
    // Afterwards: the control API and reads work again.
    const after = await d.getStatus(5000).catch(() => undefined);
    if (!after) t.violation("the control API did not answer after fds were released");
    const control = (after?.tasks as { name: string; state: string }[] | undefined)?.find((x) =>
      x.name === "control api"
    );
    if (control && control.state !== "running") {
      t.violation(`the control API task is ${control.state} after fd exhaustion`);
    }
    const sample = t.rng.sample(files, 5);
    const sums = await sha256Mounted(sample);
    if (sums.size !== sample.length) {
      t.violation(`${sample.length - sums.size} of 5 tracks unreadable after fds were released`);
    }
    if (d.exitStatus) t.violation("the daemon exited under fd exhaustion", tail(d.stderr, 20));
    t.stats.extras.push([
      `fd exhaustion (128 fds): ${picks.length} held opens served / refused / status answered in`,
      `${held} / ${failed} / ${status ? `${answerMs} ms` : "no answer"}`,
    ]);
  } catch (e) {
    t.violation(`fd exhaustion: ${(e as Error).message.split("\n")[0]}`, tail(String(e), 20));
  } finally {
    await d?.stop(15_000);
    if (await isMounted(mnt)) await abortFuseAt(mnt);
  }
}

// ---------------------------------------------------------------------------------------------
// Broken and full state dirs

/**
 * The control socket's path is a directory: `musicfs mount` (in the background) must fail with
 * a one-line reason and leave neither a daemon nor a mount behind.
 */
export async function brokenStateDir(t: Torture): Promise<void> {
  t.step = "broken state dir";
  const base = `${t.dirs.root}/broken`;
  const mnt = `${base}/mnt`;
  const state = `${base}/state`;
  const runtime = `${base}/run`;
  await Deno.mkdir(mnt, { recursive: true });
  await Deno.mkdir(controlSocketPath(state, runtime), { recursive: true });
  try {
    const r = await step(t, "background mount with control.sock a directory", () =>
      musicfs(
        ["mount", t.lib, "--mountpoint", mnt, "--state-dir", state, "--cache-dir", `${base}/c`],
        { env: { XDG_RUNTIME_DIR: runtime }, timeoutMs: 60_000 },
      ));
    const lines = r.stderr.trim().split("\n");
    if (r.code !== 1 || lines.length !== 1 || !/not a socket/.test(lines[0])) {
      t.violation("the failed background mount did not say why in one line", r.stderr);
    }
    if (await isMounted(mnt)) t.violation("the failed background mount left its mount");
    const owner = await readLock(state, { name: "musicfs" }).catch(() => null);
    if (owner) {
      t.violation(`the failed background mount left its daemon (pid ${owner.pid}) or its lock`);
      try {
        Deno.kill(owner.pid, "SIGKILL");
      } catch { /* gone */ }
    }
    t.stats.extras.push(["control socket path a directory: background mount", `exit ${r.code}`]);
  } finally {
    await detachIfMounted(mnt);
  }
}

/**
 * Fresh state on a 160 KiB tmpfs: the first scan fails for lack of space, the daemon keeps
 * serving, status reports the retry; once the tmpfs is grown, a retry completes the scan
 * without anyone asking. Root only.
 */
export async function tinyStateDir(t: Torture): Promise<void> {
  t.step = "tiny state dir";
  if (t.daemon) await t.stopClean();
  const state = `${t.dirs.root}/tinystate`;
  await mountTmpfs(state, "160k");
  try {
    const d = await step(t, "start on a 160 KiB state dir", () => t.start({ stateDir: state }));
    let failures = 0;
    const sawRetry = await step(t, "the scan to fail and be retried", () =>
      waitFor(async () => {
        const s = await d.getStatus().catch(() => undefined) as
          | { scanRetry?: { failures: number } | null }
          | undefined;
        failures = s?.scanRetry?.failures ?? 0;
        return failures > 0;
      }, STEP_MS).then(() => true, () => false));
    if (!sawRetry) {
      t.violation("a scan that ran out of space was not reported for retry", tail(d.stderr, 15));
    }
    const ls = await run(["timeout", "10", "ls", `${t.mnt}/Artists`]);
    if (ls.code !== 0) t.violation("the mount stopped answering on a full state dir", ls.stderr);
    const grow = await run(["mount", "-o", "remount,size=64m", state]);
    if (grow.code !== 0) throw new Error(`remount tmpfs: ${grow.stderr}`);
    const healed = performance.now();
    await step(t, "a retry to complete the scan", () =>
      waitFor(async () => {
        const s = await d.getStatus().catch(() => undefined);
        return s?.tracks === t.good.size && s.scan?.phase === "done";
      }, 90_000).catch(() =>
        t.violation("the scan did not complete after space came back", tail(d.stderr, 15))
      ), 90_000);
    const retriedMs = Math.round(performance.now() - healed);
    if (await t.checkOnline()) t.stats.recoveries++;
    await t.stopClean();
    t.stats.extras.push([
      "fresh state on a 160 KiB tmpfs: failed scans / complete after space came back",
      `${failures} / ${(retriedMs / 1000).toFixed(1)} s`,
    ]);
  } finally {
    await t.shutdown();
    await run(["umount", "-l", state]);
  }
}

/**
 * Existing state on a full disk: the daemon starts anyway and serves every stored track
 * read-only, status says so and shows the scan being retried; once space is freed, a retry
 * writes library.db again and completes the scan, unasked. Root only.
 */
export async function fullStateDir(t: Torture): Promise<void> {
  t.step = "full state dir";
  if (t.daemon) await t.stopClean();
  const state = `${t.dirs.root}/fullstate2`;
  await mountTmpfs(state, "8m");
  try {
    const first = await step(t, "first start", () => t.start({ stateDir: state }));
    await first.waitScanDone(60_000);
    await t.stopClean();
    await fill(`${state}/filler`);
    t.stats.corruptions++;
    const started = performance.now();
    const d = await step(t, "start on the full state dir", async () => {
      try {
        return await t.start({ afterFault: true, stateDir: state });
      } catch (e) {
        t.violation("the daemon did not start on a full state dir", tail(String(e), 30));
        throw e;
      }
    });
    const serveMs = Math.round(performance.now() - started);
    const status = await d.getStatus().catch(() => undefined);
    if (status?.tracks !== t.good.size) {
      t.violation(`a full state dir served ${status?.tracks} tracks of ${t.good.size}`);
    }
    if (!status?.readOnly) t.violation("status does not say library.db is read-only");
    const retried = await step(t, "a failed scan reported for retry", () =>
      waitFor(async () => {
        const s = await d.getStatus().catch(() => undefined);
        return (s?.scanRetry?.failures ?? 0) > 0;
      }, STEP_MS).then(() => true, () => false));
    if (!retried) t.violation("no scan retry reported on a full state dir", tail(d.stderr, 10));
    const sums = await sha256Mounted(t.rng.sample((await t.listMounted()) ?? [], 10));
    if (sums.size < 10) t.violation(`${10 - sums.size} of 10 tracks unreadable read-only`);
    // Space comes back: a retry (at most 20 s apart) writes again, unasked.
    await Deno.remove(`${state}/filler`);
    const freed = performance.now();
    const writable = await step(t, "library.db writable again", () =>
      waitFor(async () => {
        const s = await d.getStatus().catch(() => undefined);
        return !!s && !s.readOnly && s.scan?.phase === "done" && !s.scanRetry;
      }, STEP_MS).then(() => true, () => false));
    if (!writable) t.violation("library.db stayed read-only after space came back");
    const backMs = Math.round(performance.now() - freed);
    if (await t.checkOnline()) t.stats.recoveries++;
    await t.stopClean();
    if (await t.checkOffline({ stateDir: state })) t.stats.recoveries++;
    t.stats.extras.push([
      "existing state on a full disk: served read-only after / writable again after",
      `${serveMs} ms (${status?.tracks} tracks) / ${(backMs / 1000).toFixed(1)} s`,
    ]);
  } finally {
    await t.shutdown();
    await run(["umount", "-l", state]);
  }
}

// ---------------------------------------------------------------------------------------------
// A library root that vanishes

/**
 * The library root is renamed away while the daemon serves it (reads straight from the
 * source, no cache): an open of a track answers EIO at once, not ENOENT; once the root is
 * back, tracks read right again within the health probe's interval.
 */
export async function vanishedRoot(t: Torture): Promise<void> {
  t.step = "vanished root";
  if (t.daemon) await t.stopClean();
  const base = `${t.dirs.root}/vanish`;
  const mnt = `${base}/mnt`;
  const away = `${t.lib}.away`;
  await Deno.mkdir(mnt, { recursive: true });
  let d: DaemonProcess | undefined;
  let moved = false;
  try {
    d = await step(t, "start", () =>
      startDaemon({
        libraries: [t.lib],
        mountpoint: mnt,
        stateDir: `${base}/state`,
        cacheDir: `${base}/cache`,
        args: ["--cache-reads", "never"],
        readyTimeoutMs: 60_000,
      }));
    await d.waitScanDone(60_000);
    const list = await run(["timeout", "30", "find", `${mnt}/Artists`, "-type", "f", "-print0"]);
    const files = t.rng.sample(list.stdout.split("\0").filter(Boolean), 5);
    await Deno.rename(t.lib, away);
    moved = true;
    t.stats.corruptions++;
    const started = performance.now();
    const r = await run(["timeout", "20", "cat", "--", files[0]]);
    const ms = Math.round(performance.now() - started);
    if (r.code === 124) t.violation("an open hung with the root gone");
    else if (!/Input\/output error/.test(r.stderr)) {
      t.violation(`an open with the root gone did not answer EIO: ${r.stderr.trim()}`);
    }
    if (ms > 2000) t.violation(`an open with the root gone took ${ms} ms`);
    await Deno.rename(away, t.lib);
    moved = false;
    const back = performance.now();
    const ok = await step(
      t,
      "reads after the root came back",
      () =>
        waitFor(async () => (await sha256Mounted(files)).size === files.length, STEP_MS)
          .then(() => true, () => false),
    );
    if (!ok) t.violation("tracks stayed unreadable after the root came back");
    t.stats.extras.push([
      "library root renamed away: open answered EIO after / reads back after",
      `${ms} ms / ${((performance.now() - back) / 1000).toFixed(1)} s`,
    ]);
  } finally {
    if (moved) await Deno.rename(away, t.lib).catch(() => {});
    await d?.stop(15_000);
    if (await isMounted(mnt)) await abortFuseAt(mnt);
  }
}
