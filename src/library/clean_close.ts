/**
 * The clean-close mark of library.db: written when the daemon closes the database after a
 * full checkpoint, taken (and deleted) when it opens it again. A database whose file is
 * exactly as it was closed (same inode, size and modification time, no WAL) needs no
 * integrity check at start: that check reads the whole file (seconds at a million tracks)
 * before the mount could serve. A crash leaves no mark, and any write to the file, a copy, a
 * truncation or a corruption changes what the mark describes: those start with the full
 * check, as before. `musicfs check` always runs it.
 *
 * @module
 */
import { logger } from "../log/mod.ts";

const log = logger("library", "db");

interface Mark {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

function describe(path: string): Mark | undefined {
  try {
    const st = Deno.statSync(path);
    if (!st.isFile || st.mtime === null) return undefined;
    return { dev: st.dev, ino: st.ino ?? 0, size: st.size, mtimeMs: st.mtime.getTime() };
  } catch {
    return undefined;
  }
}

function walEmpty(path: string): boolean {
  try {
    return Deno.statSync(`${path}-wal`).size === 0;
  } catch (e) {
    return e instanceof Deno.errors.NotFound;
  }
}

/** Record that the database at `path` was just closed cleanly (best effort). */
export function markCleanClose(path: string): void {
  const mark = describe(path);
  if (!mark || !walEmpty(path)) return;
  try {
    Deno.writeTextFileSync(`${path}.clean`, JSON.stringify(mark) + "\n", { mode: 0o600 });
  } catch (e) {
    log.debug("Cannot write the clean-close mark of {path}: {error}", { path, error: String(e) });
  }
}

/**
 * Whether the database at `path` is exactly as it was last closed cleanly. The mark is removed
 * either way: it speaks for one open only.
 */
export function takeCleanClose(path: string): boolean {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${path}.clean`);
  } catch {
    return false;
  }
  try {
    Deno.removeSync(`${path}.clean`);
  } catch {
    // A mark that cannot be removed would vouch for the next open too: not trusted.
    return false;
  }
  let mark: Partial<Mark>;
  try {
    mark = JSON.parse(text);
  } catch {
    return false;
  }
  const now = describe(path);
  return now !== undefined && walEmpty(path) && now.dev === mark.dev && now.ino === mark.ino &&
    now.size === mark.size && now.mtimeMs === mark.mtimeMs;
}
