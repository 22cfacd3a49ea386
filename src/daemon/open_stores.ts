/**
 * The stores and services beside library.db that serving needs: the search index (loading in
 * the background), library health probes, the source opener, and the chunk cache.
 */
import { SourceOpener } from "../fs/mod.ts";
import type { Database, Origin, TrackRecord } from "../library/mod.ts";
import { LazySearch } from "../search/mod.ts";
import { type DaemonCache, openDaemonCache } from "./cache.ts";
import { HealthMonitor } from "./health.ts";
import { ProbeFiles } from "./probe_files.ts";

/** What {@link openStores} opens. */
export interface Stores {
  search: LazySearch;
  probes: ProbeFiles;
  health: HealthMonitor;
  opener: SourceOpener;
  cache: DaemonCache | undefined;
}

/** Open the stores beside library.db for this mount's `origins`. */
export async function openStores(o: {
  stateDir: string;
  cacheDir: string;
  cacheSize: number;
  cacheReads: "remote" | "always" | "never";
  followSymlinks?: boolean;
  db: Database;
  origins: Origin[];
  /** This mount's tracks, read from library.db (the search index's rebuild source). */
  ourTracks: () => TrackRecord[];
}): Promise<Stores> {
  const search = LazySearch.fromSnapshot(`${o.stateDir}/search.db`, {
    generation: o.db.generation,
    rebuildFrom: o.ourTracks,
    verify: true,
  });
  const probes = new ProbeFiles(new Map(o.origins.map((x) => [x.id, x.path])));
  const health = new HealthMonitor({
    origins: o.origins.map((x) => ({
      id: String(x.id),
      path: x.path,
      probeFile: () => probes.get(x.id),
    })),
  });
  // Every source open of the read path: off the event loop, under a deadline, regular files
  // inside a root only (symlinks out of the library only with --follow-symlinks).
  const opener = new SourceOpener({
    roots: o.origins.map((x) => x.path),
    followSymlinks: o.followSymlinks,
  });
  const cache = await openDaemonCache({
    cacheDir: o.cacheDir,
    cacheSize: o.cacheSize,
    mode: o.cacheReads,
    origins: o.origins,
    health,
    opener,
  });
  // Only now that every lock is held: a refused start must not touch the search index.
  search.startLoading();
  // An intact index opens in milliseconds, with no turn of the event loop: let it be ready
  // before the synchronous steps that follow (building serving), so searches never wait for
  // them. A rebuild (a damaged or stale index) goes on behind.
  await search.ready(0).catch(() => {});
  // The minisearch snapshot of musicfs before search.db: rebuilt into search.db.
  await Deno.remove(`${o.stateDir}/search.snapshot`).catch(() => {});
  return { search, probes, health, opener, cache };
}
