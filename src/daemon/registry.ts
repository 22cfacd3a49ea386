/**
 * The runtime registry: one small JSON file per running daemon, mountpoint -> state dir and
 * control socket, so `musicfs status`, `unmount`, `rescan` and `search` find the daemon that
 * serves a mount whatever `--state-dir` it was started with.
 *
 * It lives under `$XDG_RUNTIME_DIR/musicfs/mounts` (a per-user tmpfs, cleared at logout), or
 * `/run/musicfs/mounts` for root without one, else `~/.cache/musicfs-run/mounts`. An entry is
 * written once the mount answers and removed at shutdown; one left by a killed daemon is stale
 * (its pid is gone, or now belongs to another process) and is ignored, and removed when seen.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { exists } from "../util/mod.ts";
import { isOwnerAlive, processStartTime } from "./lock.ts";

/** One running daemon as the registry records it. */
export interface RegistryEntry {
  /** Absolute mountpoint, as the daemon mounted it. */
  mountpoint: string;
  /** Absolute state dir. */
  stateDir: string;
  /** Its control socket. */
  socket: string;
  pid: number;
  /** The process start time (from /proc), so a reused pid is not taken for the daemon. */
  startTime: string | null;
  version: string;
  /** ms since the epoch. */
  startedAt: number;
}

/** Where the registry lives (see the module doc); `env` for tests. */
export function registryDir(
  env: { get(name: string): string | undefined } = Deno.env,
  uid: number | null = Deno.uid(),
): string {
  const runtime = env.get("XDG_RUNTIME_DIR");
  if (runtime) return `${resolve(runtime)}/musicfs/mounts`;
  if (uid === 0) return "/run/musicfs/mounts";
  return `${env.get("HOME") ?? "/"}/.cache/musicfs-run/mounts`;
}

function entryFile(dir: string, mountpoint: string): string {
  const hash = createHash("sha256").update(resolve(mountpoint)).digest("hex").slice(0, 16);
  return `${dir}/${hash}.json`;
}

/**
 * Records this process as the daemon of `entry.mountpoint` (atomically: temp file, rename).
 * Returns a function that removes the entry again (only while it is still ours). Throws when
 * the registry lies in an `XDG_RUNTIME_DIR` (of `env`) that no longer exists.
 */
export async function register(
  entry: Omit<RegistryEntry, "pid" | "startTime">,
  dir: string = registryDir(),
  env: { get(name: string): string | undefined } = Deno.env,
): Promise<() => Promise<void>> {
  const full: RegistryEntry = {
    ...entry,
    pid: Deno.pid,
    startTime: processStartTime(Deno.pid),
  };
  // The runtime dir belongs to the login session (or a test's private environment): once it
  // is gone, a late daemon must not create it again in its place.
  const runtime = env.get("XDG_RUNTIME_DIR");
  if (runtime && dir.startsWith(`${resolve(runtime)}/`) && !(await exists(runtime))) {
    throw new Error(`Cannot record the mount: XDG_RUNTIME_DIR ${runtime} does not exist`);
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = entryFile(dir, entry.mountpoint);
  const tmp = `${file}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(full) + "\n", { mode: 0o600 });
  await Deno.rename(tmp, file);
  return async () => {
    const now = await readEntry(file);
    if (now && now.pid === full.pid && now.startTime === full.startTime) {
      await Deno.remove(file).catch(() => {});
    }
  };
}

async function readEntry(file: string): Promise<RegistryEntry | null> {
  try {
    const e = JSON.parse(await Deno.readTextFile(file)) as Partial<RegistryEntry>;
    if (
      typeof e.mountpoint !== "string" || typeof e.stateDir !== "string" ||
      typeof e.socket !== "string" || typeof e.pid !== "number"
    ) return null;
    return {
      mountpoint: e.mountpoint,
      stateDir: e.stateDir,
      socket: e.socket,
      pid: e.pid,
      startTime: e.startTime ?? null,
      version: e.version ?? "?",
      startedAt: e.startedAt ?? 0,
    };
  } catch {
    return null;
  }
}

/**
 * The daemons running now, by mountpoint. Entries of dead daemons are ignored and removed;
 * unreadable ones are ignored.
 */
export async function liveEntries(dir: string = registryDir()): Promise<RegistryEntry[]> {
  const out: RegistryEntry[] = [];
  let names: string[];
  try {
    names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
  } catch {
    return out; // no registry yet (or unreadable): no daemon to find there
  }
  for (const name of names.filter((n) => n.endsWith(".json")).sort()) {
    const file = `${dir}/${name}`;
    const e = await readEntry(file);
    if (!e) continue;
    if (!isOwnerAlive({ pid: e.pid, startTime: e.startTime })) {
      await Deno.remove(file).catch(() => {});
      continue;
    }
    out.push(e);
  }
  return out.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
}

/** The live daemon serving `mountpoint` (compared after resolving `.` and `..`), or null. */
export async function findByMountpoint(
  mountpoint: string,
  dir: string = registryDir(),
): Promise<RegistryEntry | null> {
  const want = resolve(mountpoint);
  const entries = await liveEntries(dir);
  return entries.find((e) => e.mountpoint === want) ?? null;
}
