/**
 * Origin health (SPEC 6): every library root is probed periodically, all in parallel, each probe
 * bounded by a timeout, so a dead share is noticed quickly and uncached reads of it can fail
 * fast instead of hanging a player. Also {@link isNetworkFs}, which decides which roots are
 * read through the chunk cache in `--cache-reads remote` mode.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import {
  mountOf as mountOfParsed,
  NETWORK_FS_MAGIC,
  parseMountinfo,
  statfsTypeAsync,
} from "../sys/mod.ts";
import { abortableSleep } from "../util/mod.ts";

const log = logger("daemon", "health");

/** One library root watched by a {@link HealthMonitor}. */
export interface HealthOrigin {
  /** The origin (library) id, as used by the reader. */
  id: string;
  /** The library root. */
  path: string;
  /**
   * A file known to exist under the root (e.g. any indexed track), asked for at every probe.
   * Stating it catches an unmounted share whose empty mountpoint directory still stats fine.
   */
  probeFile?: () => string | undefined;
}

/** The health of one origin, as {@link HealthMonitor.status} reports it. */
export interface OriginHealth {
  /** Whether reads may go to the origin. Origins start healthy until a probe says otherwise. */
  healthy: boolean;
  /** Failed probes since the last success. */
  consecutiveFailures: number;
  /** The most recent failure; kept after a recovery, for diagnosis. */
  lastError?: string;
  /** When a probe last succeeded, ms since the epoch. */
  lastOk?: number;
  /** When a probe last finished (or was counted as failed), ms since the epoch. */
  lastCheck?: number;
}

/** An {@link OriginHealth} with the origin it belongs to, as listed by {@link HealthMonitor.all}. */
export interface OriginHealthReport extends OriginHealth {
  /** The origin id. */
  id: string;
  /** The library root. */
  path: string;
}

/** Called when an origin turns unhealthy or healthy again. */
export type HealthChange = (originId: string, health: OriginHealth) => void;

/** Options of {@link HealthMonitor}. */
export interface HealthMonitorOptions {
  /** The roots to watch. */
  origins: HealthOrigin[];
  /** Time between the end of one probe round and the start of the next. Default 5000 ms. */
  intervalMs?: number;
  /** A probe not answered within this counts as failed. Default 1500 ms (SPEC: under 2 s). */
  timeoutMs?: number;
  /** Failed probes in a row before an origin is unhealthy. Default 1: fail fast. */
  unhealthyAfter?: number;
  /** Stops the monitor for good: no probe starts after it aborts (daemon shutdown). */
  signal?: AbortSignal;
  /** See {@link HealthMonitor.onChange}. */
  onChange?: HealthChange;
}

interface OriginState {
  origin: HealthOrigin;
  health: OriginHealth;
  /** The probe round this origin is in now; concurrent `probeNow` calls share it. */
  attempt?: Promise<void>;
  /**
   * The filesystem calls of a probe that timed out and has not returned yet. While set, no new
   * calls are started: each would park one more blocking thread on the dead filesystem.
   */
  stuck?: { since: number };
}

/**
 * Probes library roots: a `stat` of the root (which must be a directory) and of its known file,
 * run on Deno's blocking threads and abandoned after `timeoutMs`, so a hanging filesystem (a
 * dead NFS server, a stopped FUSE daemon) cannot hang the daemon. At most one probe per origin
 * is outstanding: while an abandoned probe is still stuck, the next round counts a failure
 * without touching the filesystem again.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { HealthMonitor } from "./health.ts";
 *
 * const root = await Deno.makeTempDir();
 * const changes: string[] = [];
 * const health = new HealthMonitor({
 *   origins: [{ id: "1", path: root }],
 *   onChange: (id, h) => changes.push(`${id}: ${h.healthy ? "back" : h.lastError}`),
 * });
 * // The daemon runs it as a supervised task: a round at once, then one every intervalMs.
 * const stop = new AbortController();
 * const running = health.run(stop.signal);
 * try {
 *   await health.probeNow(); // joins the round in progress
 *   assert.ok(health.isHealthy("1"));
 *   await Deno.remove(root); // the share goes away...
 *   await health.probeNow();
 *   // ...so uncached reads of it fail with EIO at once instead of hanging a player.
 *   assert.ok(!health.isHealthy("1"));
 *   assert.equal(health.status("1").consecutiveFailures, 1);
 *   assert.equal(changes.length, 1);
 *   await Deno.mkdir(root);
 *   await health.probeNow();
 *   assert.deepEqual(changes.slice(1), ["1: back"]);
 * } finally {
 *   stop.abort();
 *   await running;
 *   await Deno.remove(root, { recursive: true }).catch(() => {});
 * }
 * ```
 */
export class HealthMonitor {
  readonly #states = new Map<string, OriginState>();
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #unhealthyAfter: number;
  readonly #signal?: AbortSignal;
  /** Called when an origin turns unhealthy or healthy again (after the state changed). */
  onChange?: HealthChange;

  /** A monitor of `opts.origins`; nothing is probed until {@link run} or {@link probeNow}. */
  constructor(opts: HealthMonitorOptions) {
    this.#intervalMs = opts.intervalMs ?? 5000;
    this.#timeoutMs = opts.timeoutMs ?? 1500;
    this.#unhealthyAfter = Math.max(1, Math.floor(opts.unhealthyAfter ?? 1));
    this.#signal = opts.signal;
    this.onChange = opts.onChange;
    for (const origin of opts.origins) {
      if (this.#states.has(origin.id)) {
        throw new RangeError(`Cannot monitor origin ${origin.id} twice`);
      }
      this.#states.set(origin.id, {
        origin,
        health: { healthy: true, consecutiveFailures: 0 },
      });
    }
  }

  /**
   * The supervised task: a probe round at once, then one every `intervalMs`. Resolves when
   * `signal` (or the constructor's signal) aborts, without waiting for a round in progress;
   * rejects only on a bug.
   */
  async run(signal?: AbortSignal): Promise<void> {
    const signals = [signal, this.#signal].filter((s): s is AbortSignal => s !== undefined);
    const stop = signals.length ? AbortSignal.any(signals) : undefined;
    while (!stop?.aborted) {
      await raceAbort(this.probeNow(), stop);
      if (stop?.aborted) break;
      await abortableSleep(this.#intervalMs, stop);
    }
  }

  /**
   * Probe every origin now, in parallel; resolves once every probe has answered or timed out
   * (so within about `timeoutMs`). An origin already being probed is not probed twice: the
   * caller waits for that probe.
   */
  async probeNow(): Promise<void> {
    if (this.#signal?.aborted) return;
    await Promise.all([...this.#states.values()].map((s) => this.#probe(s)));
  }

  /** The health of `originId`; throws a RangeError for an origin not monitored. */
  status(originId: string): OriginHealth {
    const s = this.#states.get(originId);
    if (!s) throw new RangeError(`Unknown origin ${originId}`);
    return { ...s.health };
  }

  /**
   * Whether reads may go to `originId`. An origin that is not monitored counts as healthy: its
   * reads still run under the reader's own timeout.
   */
  isHealthy(originId: string): boolean {
    return this.#states.get(originId)?.health.healthy ?? true;
  }

  /** Every origin's health, in the order given, for status.json and `musicfs status`. */
  all(): OriginHealthReport[] {
    return [...this.#states.values()].map((s) => ({
      id: s.origin.id,
      path: s.origin.path,
      ...s.health,
    }));
  }

  #probe(s: OriginState): Promise<void> {
    if (s.attempt) return s.attempt;
    const attempt = this.#attempt(s).finally(() => {
      if (s.attempt === attempt) s.attempt = undefined;
    });
    s.attempt = attempt;
    return attempt;
  }

  async #attempt(s: OriginState): Promise<void> {
    if (s.stuck) {
      const secs = ((Date.now() - s.stuck.since) / 1000).toFixed(1);
      this.#record(s, `the previous probe has not answered for ${secs} s`);
      return;
    }
    const calls = probeCalls(s.origin);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#timeoutMs);
    });
    try {
      const outcome = await Promise.race([calls, timedOut]);
      if (outcome === "timeout") {
        const stuck = { since: Date.now() - this.#timeoutMs };
        s.stuck = stuck;
        // The calls are abandoned, not cancelled (a blocked stat cannot be); once they return,
        // the next round may touch the filesystem again.
        calls.finally(() => {
          if (s.stuck === stuck) s.stuck = undefined;
        });
        this.#record(s, `no answer within ${this.#timeoutMs} ms`);
      } else {
        this.#record(s, outcome);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Count a probe outcome: `undefined` is a success, a string the failure's reason. */
  #record(s: OriginState, error: string | undefined): void {
    const h = s.health;
    const now = Date.now();
    const wasHealthy = h.healthy;
    h.lastCheck = now;
    if (error === undefined) {
      const failures = h.consecutiveFailures;
      h.consecutiveFailures = 0;
      h.lastOk = now;
      h.healthy = true;
      if (!wasHealthy) {
        log.info(
          "Library root {path} of origin {id} is reachable again after {failures} failed probes",
          {
            path: s.origin.path,
            id: s.origin.id,
            failures,
          },
        );
      }
    } else {
      h.consecutiveFailures++;
      h.lastError = error;
      if (h.consecutiveFailures >= this.#unhealthyAfter) h.healthy = false;
      if (wasHealthy && !h.healthy) {
        log.warn(
          "Library root {path} of origin {id} is unreachable ({error}); uncached reads fail " +
            "with EIO until it answers again",
          { path: s.origin.path, id: s.origin.id, error },
        );
      } else {
        log.debug("Probe of {path} failed ({failures} in a row): {error}", {
          path: s.origin.path,
          failures: h.consecutiveFailures,
          error,
        });
      }
    }
    if (wasHealthy !== h.healthy) {
      try {
        this.onChange?.(s.origin.id, { ...h });
      } catch (e) {
        // A failing listener must not stop the probes that keep reads from hanging.
        log.error("Health change listener failed: {error}", { error: String(e) });
      }
    }
  }
}

/**
 * The filesystem calls of one probe, run one after the other so a dead filesystem parks at
 * most one blocking thread. Resolves with `undefined` on success or the failure's reason;
 * never rejects.
 */
async function probeCalls(origin: HealthOrigin): Promise<string | undefined> {
  try {
    const root = await Deno.stat(origin.path);
    if (!root.isDirectory) return `${origin.path} is not a directory`;
    let file: string | undefined;
    try {
      file = origin.probeFile?.();
    } catch (e) {
      log.error("probeFile of origin {id} failed: {error}", { id: origin.id, error: String(e) });
    }
    if (file !== undefined) await Deno.stat(file);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** `p`, or `undefined` as soon as `signal` aborts. */
function raceAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve(undefined);
  let onAbort!: () => void;
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

// ---------------------------------------------------------------------------------------------
// Network filesystem detection

/** mountinfo fstypes of network filesystems (besides `fuse.*`, see {@link isNetworkFsType}). */
const NETWORK_FSTYPES = new Set([
  "nfs",
  "nfs4",
  "cifs",
  "smb3",
  "smbfs",
  "9p",
  "afs",
  "ceph",
  "coda",
  "ncpfs",
  "glusterfs",
  "lustre",
  "beegfs",
  "gpfs",
  "orangefs",
  "davfs",
]);

/**
 * Whether a /proc/self/mountinfo fstype is a network filesystem: the kernel ones (nfs, nfs4,
 * cifs, smb3, 9p, ceph...) and every FUSE filesystem (`fuse`, `fuse.sshfs`, `fuse.rclone`,
 * `fuse.s3fs`, unknown subtypes) except our own `fuse.musicfs` and block-device backed
 * `fuseblk`. An unknown FUSE filesystem counts as network because mistaking a network one for
 * local lets a dead server hang readers, while the reverse only costs cache space.
 */
export function isNetworkFsType(fstype: string): boolean {
  if (NETWORK_FSTYPES.has(fstype)) return true;
  if (fstype === "fuse.musicfs") return false;
  return fstype === "fuse" || fstype.startsWith("fuse.");
}

/** The mount of /proc/self/mountinfo text `mountinfo` holding `absPath`. */
export function mountOf(
  mountinfo: string,
  absPath: string,
): { mountpoint: string; fstype: string; source: string } | undefined {
  const m = mountOfParsed(parseMountinfo(mountinfo), absPath);
  return m && { mountpoint: m.mountpoint, fstype: m.fstype, source: m.source };
}

/** What {@link detectFilesystem} found. */
export interface FsDetection {
  /** Whether `path` is on a network filesystem. */
  network: boolean;
  /** The mountinfo fstype of the mount holding it, when found, e.g. `nfs4`, `fuse.sshfs`. */
  fstype?: string;
  /** The mountpoint of that mount. */
  mountpoint?: string;
  /** statfs(2) f_type, when statfs answered. */
  magic?: number;
  /** Why it was judged so, for the log. */
  reason: string;
}

/**
 * Find out whether `path` is on a network filesystem, from its mount's fstype in
 * /proc/self/mountinfo (the only place FUSE subtypes such as `fuse.sshfs` show) and from the
 * statfs(2) f_type. Calls that touch the filesystem are abandoned after `timeoutMs`; a root
 * that does not answer counts as network, since routing it through the cache is what keeps a
 * dead share from hanging readers.
 */
export async function detectFilesystem(
  path: string,
  opts: { timeoutMs?: number } = {},
): Promise<FsDetection> {
  const timeoutMs = opts.timeoutMs ?? 1500;
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const real = await withTimeout(Deno.realPath(abs).catch(() => null), timeoutMs);
  if (real === "timeout") {
    return { network: true, reason: `${path} did not answer within ${timeoutMs} ms` };
  }
  const resolved = real ?? normalize(abs);
  let mount: ReturnType<typeof mountOf>;
  try {
    mount = mountOf(await Deno.readTextFile("/proc/self/mountinfo"), resolved);
  } catch {
    // No /proc (a container without it): statfs alone decides.
  }
  const magicOrTimeout = await withTimeout(
    statfsTypeAsync(resolved).catch(() => undefined),
    timeoutMs,
  );
  const magic = typeof magicOrTimeout === "number" ? magicOrTimeout : undefined;
  const base = { fstype: mount?.fstype, mountpoint: mount?.mountpoint, magic };
  if (mount && isNetworkFsType(mount.fstype)) {
    return { network: true, ...base, reason: `mounted as ${mount.fstype} on ${mount.mountpoint}` };
  }
  const magicName = magic === undefined
    ? undefined
    : Object.entries(NETWORK_FS_MAGIC).find(([, m]) => m === magic)?.[0];
  if (magicName) return { network: true, ...base, reason: `statfs reports ${magicName}` };
  if (magicOrTimeout === "timeout") {
    return { network: true, ...base, reason: `statfs did not answer within ${timeoutMs} ms` };
  }
  return {
    network: false,
    ...base,
    reason: mount ? `mounted as ${mount.fstype} on ${mount.mountpoint}` : "local (statfs)",
  };
}

/** Whether `path` is on a network filesystem; see {@link detectFilesystem}. */
export async function isNetworkFs(
  path: string,
  opts: { timeoutMs?: number } = {},
): Promise<boolean> {
  return (await detectFilesystem(path, opts)).network;
}

function normalize(abs: string): string {
  const out: string[] = [];
  for (const part of abs.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), ms));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
