/**
 * The one /proc/self/mountinfo parser of the project (proc(5)): the FUSE layer finds its own and
 * dead mounts with it, the daemon the filesystem type of a library root.
 */

import { closeFd, cstr, libc, O_CLOEXEC, O_RDONLY } from "./libc.ts";

/** A line of /proc/self/mountinfo. */
export interface MountInfo {
  /** Mountpoint as the kernel shows it (octal escapes decoded). */
  mountpoint: string;
  /** Filesystem type, e.g. `fuse`, `fuse.musicfs`, `ext4`. */
  fstype: string;
  /** Mount source (e.g. `musicfs`, a device path), escapes decoded. */
  source: string;
  /** `major:minor` of the mounted filesystem (the FUSE connection id is the minor). */
  device: string;
}

/** Decode mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`). */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** Parse mountinfo text; lines that do not have the `-` separator are skipped. */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    if (left.length < 5 || !right[0]) continue;
    out.push({
      mountpoint: unescapeMountField(left[4]),
      fstype: right[0],
      source: unescapeMountField(right[1] ?? ""),
      device: left[2],
    });
  }
  return out;
}

/** The mounts of this process's namespace, in mount order (later ones on top). */
export function readMountinfo(): MountInfo[] {
  return parseMountinfo(Deno.readTextFileSync("/proc/self/mountinfo"));
}

/** Every mount whose mountpoint is exactly `path` (the last one is the top of the stack). */
export function mountsAt(path: string, mounts: MountInfo[] = readMountinfo()): MountInfo[] {
  return mounts.filter((m) => m.mountpoint === path);
}

/** The mount holding `absPath`: the longest mountpoint prefix, the top one on a tie. */
export function mountOf(mounts: MountInfo[], absPath: string): MountInfo | undefined {
  let best: MountInfo | undefined;
  for (const m of mounts) {
    const mp = m.mountpoint;
    const inside = mp === "/" || absPath === mp || absPath.startsWith(mp + "/");
    // Later lines are mounted on top of earlier ones at the same point, so `>=` keeps the top.
    if (inside && (!best || mp.length >= best.mountpoint.length)) best = m;
  }
  return best;
}

const POLLPRI = 0x2;
const POLLERR = 0x8;

/**
 * Tells, with one poll(2) and no wait, whether this namespace's mount table changed since the
 * last question (or since the watch began). The kernel flags an open /proc/self/mountinfo on
 * every mount, unmount and move (proc(5)); asking clears the flag.
 */
export class MountWatch {
  #fd: number;
  readonly #pfd = new Int32Array(2);
  readonly #pfdBytes = new Uint8Array(this.#pfd.buffer);

  /** Start watching; {@link changed} says true when the table cannot be watched. */
  constructor() {
    this.#fd = libc().open(cstr("/proc/self/mountinfo"), O_RDONLY | O_CLOEXEC, 0);
  }

  /** Whether /proc/self/mountinfo could be opened (else every call says "changed"). */
  get watching(): boolean {
    return this.#fd >= 0;
  }

  /** Whether a mount came, went or moved since the last call. */
  changed(): boolean {
    if (this.#fd < 0) return true;
    this.#pfd[0] = this.#fd;
    this.#pfd[1] = POLLPRI; // events (short), revents (short) = 0
    const n = libc().poll(this.#pfdBytes, 1 as unknown as bigint, 0);
    if (n < 0) return true;
    return n > 0 && ((this.#pfd[1] >>> 16) & (POLLPRI | POLLERR)) !== 0;
  }

  /** Stop watching. */
  close(): void {
    closeFd(this.#fd);
    this.#fd = -1;
  }
}
