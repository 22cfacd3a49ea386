/**
 * Filesystem watches that survive folders they cannot enter. `Deno.watchFs(root, { recursive:
 * true })` fails as a whole when one folder anywhere below the root cannot be read (EACCES) or
 * lies past PATH_MAX, which would leave a whole library unwatched for one odd folder. So the
 * folders that fail are cut out: the folders on the way down to them are watched on their own
 * (their direct entries, so a permission change on the failing folder is still seen), and every
 * other subtree recursively, in two watchers in all (inotify instances are a scarce per-user
 * resource).
 */

/** Watches over some roots, iterated as one stream of events. */
export interface WatchSet extends AsyncIterable<Deno.FsEvent> {
  /** Folders left out because they cannot be watched (absolute paths). */
  readonly skipped: string[];
  /** Stop every watch; the iteration ends. */
  close(): void;
}

/** The path an error of `Deno.watchFs` is "about", if any. */
function pathOf(e: unknown): string | undefined {
  const m = /about (\[.*\])\s*$/.exec(e instanceof Error ? e.message : String(e));
  if (!m) return undefined;
  try {
    const paths = JSON.parse(m[1]);
    return typeof paths[0] === "string" ? paths[0] : undefined;
  } catch {
    return undefined;
  }
}

function isUnder(path: string, dir: string): boolean {
  return path.startsWith(dir + "/");
}

/** Split `dir` around the `bad` folders below it into recursive and flat watches. */
function split(dir: string, bad: Set<string>, recursive: string[], flat: string[]): void {
  if (![...bad].some((b) => isUnder(b, dir))) {
    recursive.push(dir);
    return;
  }
  flat.push(dir);
  for (const e of Deno.readDirSync(dir)) {
    const child = `${dir}/${e.name}`;
    if (bad.has(child)) continue;
    let isDir = e.isDirectory;
    if (e.isSymlink) {
      try {
        isDir = Deno.statSync(child).isDirectory;
      } catch {
        continue;
      }
    }
    if (isDir) split(child, bad, recursive, flat);
  }
}

function merge(watchers: Deno.FsWatcher[], skipped: string[]): WatchSet {
  const queue: Deno.FsEvent[] = [];
  let wake: (() => void) | undefined;
  let running = watchers.length;
  let error: unknown;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  for (const w of watchers) {
    (async () => {
      try {
        for await (const ev of w) {
          queue.push(ev);
          notify();
        }
      } catch (e) {
        error ??= e;
      } finally {
        running--;
        // One watch ending ends the set: the caller treats it as the watch dying.
        for (const other of watchers) {
          try {
            other.close();
          } catch { /* closed */ }
        }
        notify();
      }
    })();
  }
  return {
    skipped,
    close() {
      for (const w of watchers) {
        try {
          w.close();
        } catch { /* closed */ }
      }
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (running < watchers.length) break;
        await new Promise<void>((r) => (wake = r));
      }
      while (queue.length > 0) yield queue.shift()!;
      if (error !== undefined) throw error;
    },
  };
}

/**
 * Watch `roots` recursively, leaving out (and listing in {@link WatchSet.skipped}) the folders
 * below them that cannot be watched. Throws when a root itself cannot be watched, or for any
 * other failure (the inotify watch limit...).
 */
export function watchAround(roots: string[]): WatchSet {
  const bad = new Set<string>();
  for (let attempt = 0;; attempt++) {
    const recursive: string[] = [];
    const flat: string[] = [];
    for (const r of roots) split(r, bad, recursive, flat);
    const watchers: Deno.FsWatcher[] = [];
    try {
      if (recursive.length) watchers.push(Deno.watchFs(recursive, { recursive: true }));
      if (flat.length) watchers.push(Deno.watchFs(flat, { recursive: false }));
      return merge(watchers, [...bad]);
    } catch (e) {
      for (const w of watchers) w.close();
      const p = pathOf(e);
      const cannotEnter = e instanceof Deno.errors.PermissionDenied ||
        /os error (13|36)\b/.test(e instanceof Error ? e.message : "");
      // Give up on anything but a folder below a root that cannot be entered, and on a library
      // with very many of them (each costs a try).
      if (
        !cannotEnter || p === undefined || !roots.some((r) => isUnder(p, r)) || bad.has(p) ||
        attempt >= 100
      ) {
        throw e;
      }
      bad.add(p);
    }
  }
}
