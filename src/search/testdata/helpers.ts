/** Shared helpers of the search tests. */
import type { TrackRecord } from "../../library/types.ts";

/** A track with `id` and the given tags; relPath derives from the title unless given. */
export function track(id: number, tags: Partial<TrackRecord> = {}): TrackRecord {
  const title = tags.title ?? `Track ${id}`;
  return {
    id,
    originId: 1,
    relPath: `${tags.artist ?? "Unknown"}/${title}.flac`,
    ext: "flac",
    size: 1000,
    mtimeMs: 0,
    ...tags,
  };
}

/** A temp dir removed after `fn`, whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-search-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The ids of `results`, in order. */
export function ids(results: { id: number }[]): number[] {
  return results.map((r) => r.id);
}
