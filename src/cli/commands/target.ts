/**
 * Which daemon a command addresses: `--state-dir` names one outright; `--mountpoint DIR` (or
 * `unmount DIR`) finds the daemon serving DIR in the runtime registry; with neither, the one
 * running daemon, or the list of them when several run (the command then says how to pick).
 *
 * @module
 */
import { basename, dirname, resolve } from "node:path";
import {
  controlRequest,
  controlSocketPath,
  type DaemonStatus,
  findByMountpoint,
  liveEntries,
  type RegistryEntry,
} from "../../daemon/mod.ts";
import { CommandError } from "./common.ts";

/** What the user typed to pick a daemon. */
export interface TargetFlags {
  /** `--state-dir`, absolute. */
  stateDir?: string;
  /** `--mountpoint` (or `unmount DIR`), absolute. */
  mountpoint?: string;
}

/** Where things are looked for; tests give their own. */
export interface TargetEnv {
  /** The state dir used when nothing else names one. */
  defaultStateDir: string;
  /** The registry dir; default `registryDir()`. */
  registryDir?: string;
}

/** The outcome of {@link resolveTarget}. */
export type Target =
  /** One daemon (or the one state dir to look in, when none may be running). */
  | { kind: "one"; stateDir: string; socketPath?: string; mountpoint?: string }
  /** `--mountpoint` named a folder no running musicfs serves. */
  | { kind: "unserved"; mountpoint: string; running: RegistryEntry[]; defaultStateDir: string }
  /** No flag, and several daemons run. */
  | { kind: "many"; entries: RegistryEntry[] };

/**
 * The path as the kernel and the daemon spell it: the parent resolved (a dead mountpoint
 * itself cannot be stat'ed: ENOTCONN), `~/` expanded.
 */
export function canonicalMountpoint(path: string): string {
  const home = Deno.env.get("HOME") ?? "/";
  const abs = resolve(path.startsWith("~/") ? `${home}/${path.slice(2)}` : path);
  if (abs === "/") return abs;
  try {
    return `${Deno.realPathSync(dirname(abs)).replace(/\/$/, "")}/${basename(abs)}`;
  } catch {
    return abs;
  }
}

/** Picks the daemon `flags` name; see the module doc. */
export async function resolveTarget(flags: TargetFlags, env: TargetEnv): Promise<Target> {
  if (flags.stateDir) {
    return { kind: "one", stateDir: flags.stateDir, mountpoint: flags.mountpoint };
  }
  if (flags.mountpoint) {
    const mountpoint = canonicalMountpoint(flags.mountpoint);
    const entry = await findByMountpoint(mountpoint, env.registryDir);
    if (entry) {
      return {
        kind: "one",
        stateDir: entry.stateDir,
        socketPath: entry.socket,
        mountpoint: entry.mountpoint,
      };
    }
    // A daemon that could not write the registry: the default one, if it serves this folder.
    const st = await quickStatus(controlSocketPath(env.defaultStateDir));
    if (st && canonicalMountpoint(st.mountpoint) === mountpoint) {
      return { kind: "one", stateDir: env.defaultStateDir, mountpoint };
    }
    return {
      kind: "unserved",
      mountpoint,
      running: await liveEntries(env.registryDir),
      defaultStateDir: env.defaultStateDir,
    };
  }
  const entries = await liveEntries(env.registryDir);
  if (entries.length === 1) {
    const [e] = entries;
    return { kind: "one", stateDir: e.stateDir, socketPath: e.socket, mountpoint: e.mountpoint };
  }
  if (entries.length > 1) return { kind: "many", entries };
  return { kind: "one", stateDir: env.defaultStateDir };
}

/** GET /status with a short bound; null when nothing answers. */
export async function quickStatus(socket: string, timeoutMs = 2000): Promise<DaemonStatus | null> {
  try {
    return await controlRequest(socket, "GET", "/status", { timeoutMs }) as DaemonStatus;
  } catch {
    return null;
  }
}

/** The error for a command that needs one daemon when several run. */
export function manyDaemonsError(entries: RegistryEntry[], command: string): CommandError {
  return new CommandError(
    `${entries.length} musicfs daemons are running (${
      entries.map((e) => e.mountpoint).join(", ")
    })`,
    `pick one: musicfs ${command} --mountpoint DIR`,
    2,
  );
}

/** The error for `--mountpoint DIR` when no running musicfs serves DIR. */
export function unservedError(target: Extract<Target, { kind: "unserved" }>): CommandError {
  const others = target.running.map((e) => e.mountpoint);
  return new CommandError(
    `no running musicfs serves ${target.mountpoint}`,
    others.length
      ? `running: ${others.join(", ")}`
      : "start one with: musicfs mount <library> --mountpoint " + target.mountpoint,
  );
}
