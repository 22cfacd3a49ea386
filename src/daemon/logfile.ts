/**
 * Rotation of the background daemon's log file in the state dir. It runs at startup, before
 * the log sink opens the file: the sink keeps its descriptor for the daemon's lifetime, so
 * renaming the file under a running daemon would only redirect nothing.
 *
 * @module
 */

/** Options of {@link rotateLogFile}. */
export interface RotateOptions {
  /** Rotate once the file reaches this size. Default 10 MiB. */
  maxBytes?: number;
  /** Rotated generations to keep (`.1` newest). Default 3. */
  keep?: number;
}

/**
 * Moves `path` to `path.1` (and `path.1` to `path.2`..., dropping the oldest) when it has
 * reached `maxBytes`. A missing file is left alone.
 * @returns true if the file was rotated
 */
export async function rotateLogFile(path: string, options: RotateOptions = {}): Promise<boolean> {
  const maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
  const keep = Math.max(1, options.keep ?? 3);
  let size: number;
  try {
    size = (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  if (size < maxBytes) return false;
  await Deno.remove(`${path}.${keep}`).catch(() => {});
  for (let i = keep - 1; i >= 1; i--) {
    await Deno.rename(`${path}.${i}`, `${path}.${i + 1}`).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
  await Deno.rename(path, `${path}.1`);
  return true;
}
