/**
 * A library root that vanishes (an unmounted disk, a lazily detached bind mount, a renamed
 * folder) answers EIO at once, as documented for unreachable origins, not ENOENT: a player
 * must not conclude that the track was deleted. The health monitor notices within its probe
 * interval (5 s); this catches the opens in between: an open failing with ENOENT or ENOTDIR
 * looks at the root (bounded, off the loop) and, when the root is gone, answers EIO and asks
 * the monitor to probe now, after which opens of that origin fail fast without touching it.
 *
 * @module
 */
import { FsError, type FuseOperations, type OpenResult } from "../fuse/mod.ts";

const ENOENT = 2;
const EIO = 5;
const ENOTDIR = 20;

/** What {@link guardVanishedRoots} needs. */
export interface RootGuardOptions {
  /** The origin (id and root) of a source-backed inode; undefined for other inodes. */
  originOf(ino: number): { id: number; root: string } | undefined;
  /** Called when a root was found gone (e.g. `health.probeNow()`). */
  onRootGone(originId: number): void;
  /** Bound on the look at the root. Default 1000 ms. */
  timeoutMs?: number;
}

function errnoOf(e: unknown): number | undefined {
  const n = (e as { errno?: unknown })?.errno ?? (e as { cause?: { errno?: unknown } })?.cause
    ?.errno;
  return typeof n === "number" ? n : undefined;
}

/** Whether `root` is an existing directory, within `timeoutMs` (a hang counts as gone). */
async function rootThere(root: string, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((r) => timer = setTimeout(() => r(false), timeoutMs));
  try {
    return await Promise.race([
      Deno.stat(root).then((st) => st.isDirectory, () => false),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Wraps `ops.open` so that a source missing because its whole root is gone answers EIO. */
export function guardVanishedRoots(ops: FuseOperations, opts: RootGuardOptions): void {
  const open = ops.open.bind(ops);
  const timeoutMs = opts.timeoutMs ?? 1000;
  ops.open = async (ino, flags, ctx): Promise<OpenResult> => {
    try {
      return await open(ino, flags, ctx);
    } catch (e) {
      const errno = errnoOf(e);
      if (errno !== ENOENT && errno !== ENOTDIR) throw e;
      const origin = opts.originOf(ino);
      if (!origin || (await rootThere(origin.root, timeoutMs))) throw e;
      try {
        opts.onRootGone(origin.id);
      } catch { /* the answer below matters more */ }
      throw new FsError(EIO, `library root ${origin.root} is gone`, { cause: e });
    }
  };
}
