/**
 * What serves the mount, built from the stored library: the virtual tree, the change hub that
 * keeps it (and search, and the kernel) current, and the FUSE operations over it with their
 * guards (the fd budget, vanished roots, re-checks of sources a read found wrong).
 */
import type { FuseSession } from "../fuse/mod.ts";
import {
  EMPTY_TREE_STATS,
  type Invalidation,
  MusicOps,
  type SourceOpener,
  type TreeStats,
  VirtualTree,
} from "../fs/mod.ts";
import type { Database, Origin, TrackRecord, TreeStamp } from "../library/mod.ts";
import type { LazySearch } from "../search/mod.ts";
import type { DaemonCache } from "./cache.ts";
import { ChangeHub } from "./change_hub.ts";
import { FdBudget, guardOpens } from "./fd_limit.ts";
import type { HealthMonitor } from "./health.ts";
import type { ProbeFiles } from "./probe_files.ts";
import { guardVanishedRoots } from "./root_guard.ts";
import { SourceRecheck } from "./source_recheck.ts";
import { storedTracks } from "./open_library.ts";
import { TreeRowsKeeper } from "./tree_rows.ts";
import { logger } from "../log/mod.ts";

/** The inputs of {@link buildServing}. */
export interface ServingOptions {
  db: Database;
  /** This mount's libraries. */
  origins: Origin[];
  /** The stored tracks of this mount's libraries (none when `storedTree` is given). */
  tracks: TrackRecord[];
  /** Serve the tree from library.db's rows until {@link loadStoredTree} builds it. */
  storedTree?: TreeStamp;
  /** The shape of this mount's tree rows (see treeShape). */
  treeShape: string;
  /** No scan running: the tree's rows may be written whole. */
  scanIdle: () => boolean;
  /** Keeps rows of this mount's libraries (others stay stored, out of the tree). */
  ours: <T extends { originId: number }>(xs: T[]) => T[];
  uid: number;
  gid: number;
  layout?: string;
  allowOther?: boolean;
  allowOtherSearch?: boolean;
  search: LazySearch;
  health: HealthMonitor;
  opener: SourceOpener;
  cache: DaemonCache | undefined;
  probes: ProbeFiles;
  /** The soft open-files limit. */
  fdLimit: number;
  /** The text of /.musicfs/status. */
  statusText: () => string;
  /** A count of the requests served (FUSE and control API): memory is released between them. */
  activity: () => number;
  /** The FUSE session, once mounted. */
  session: () => FuseSession | undefined;
  /** Called when a batch changed the problem list. */
  onProblemsChanged: () => void;
  /** The scanner's re-check of paths under an origin. */
  rescanPaths: (origin: Origin, relPaths: string[]) => Promise<unknown>;
}

/** The serving side of a daemon. */
export interface Serving {
  tree: VirtualTree;
  hub: ChangeHub;
  ops: MusicOps;
  /** Source fds never eat the reserve the daemon itself needs (control API, SQLite, log). */
  fds: FdBudget;
  /** Keeps library.db's rows of the tree current. */
  rows: TreeRowsKeeper;
}

/** Build the tree from the stored library, and the operations that serve it. */
export function buildServing(o: ServingOptions): Serving {
  const { db, origins, ours, search, health } = o;
  // Called only once the tree below exists (background owner lookups).
  const invalidate = (inv: Invalidation[]) => hub.invalidate(inv);
  const stored = o.storedTree;
  const tree = new VirtualTree({
    origins,
    // The tree is built from these when it is needed, and dropped again when idle.
    stored: {
      source: db,
      stats: stored ? JSON.parse(stored.stats) as TreeStats : EMPTY_TREE_STATS,
      generation: stored?.generation,
      content: () => ({
        tracks: ourTracks(storedTracks(db), origins),
        covers: ours(db.covers()),
        playlists: ours(db.playlists()),
        names: db.names(),
        problems: ours(db.problems()),
        generation: db.generation,
      }),
      onLoaded: (r) => {
        rows.afterLoad(r.generation);
        hub.invalidate(r.invalidations);
        hub.saveNames();
        const props = { n: r.differences };
        const msg = "Tree built in memory; {n} stored entries it was served from differed";
        if (r.differences) logger("daemon").warn(msg, props);
        else logger("daemon").debug(msg, props);
      },
    },
    ...(stored ? {} : {
      tracks: o.tracks,
      covers: ours(db.covers()),
      playlists: ours(db.playlists()),
      names: db.names(),
    }),
    problems: ours(db.problems()),
    uid: o.uid,
    gid: o.gid,
    layout: o.layout,
    status: o.statusText,
    // Owners and modes the records lack (covers, rows from before schema 2) are stat'ed in
    // the background; until then those files show as ours alone.
    permissions: o.allowOther
      ? { shareSearch: o.allowOtherSearch, onAccessResolved: invalidate }
      : undefined,
  });
  const rows = new TreeRowsKeeper({
    db,
    tree,
    shape: o.treeShape,
    valid: stored?.generation,
    idle: () => {
      try {
        return o.scanIdle();
      } catch {
        return false;
      }
    },
  });
  const hub = new ChangeHub({
    tree,
    search,
    names: rows,
    problems: () => ours(db.problems()),
    probes: o.probes,
    onProblemsChanged: o.onProblemsChanged,
  });
  hub.saveNames();

  const recheck = new SourceRecheck(origins, o.rescanPaths);
  const ops = new MusicOps({
    tree,
    search: async (q, limit) =>
      (await search.search(q, limit, { timeoutMs: 2000 })).map((r) => r.id),
    invalidate,
    cache: o.cache?.route,
    healthy: (id) => health.status(String(id))?.healthy ?? true,
    opener: o.opener,
    invalidateAttr: async (ino) => {
      const session = o.session();
      if (!session) return;
      session.notifyInvalInode(ino, -1, 0);
      await session.flushNotifications();
    },
    onSourceFault: (f) => recheck.later(f.originId, f.path, true),
    onSourceChanged: (originId, path) => recheck.later(originId, path, false),
  });

  const fds = new FdBudget({ limit: o.fdLimit });
  guardOpens(ops, fds, (ino) => {
    const kind = tree.get(ino)?.kind;
    return kind === "track" || kind === "cover";
  });
  guardVanishedRoots(ops, {
    originOf: (ino) => {
      const n = tree.get(ino);
      if (n?.kind !== "track" && n?.kind !== "cover") return undefined;
      const source = tree.sourcePath(n);
      const origin = origins.find((x) => source.startsWith(`${x.path}/`));
      return origin && { id: origin.id, root: origin.path };
    },
    onRootGone: () => void health.probeNow(),
  });
  // Query folders go with the tree: only when the kernel holds none of them.
  rows.dropWhenIdle(treeIdleMs(), () => ops.releaseSearchDirs(), o.activity);
  return { tree, hub, ops, fds, rows };
}

/**
 * How long the tree in memory stays unused before it is dropped (library.db's rows serve
 * then): `MUSICFS_TREE_IDLE_SECONDS`, default 300; 0 keeps it.
 */
function treeIdleMs(): number {
  const v = Number(Deno.env.get("MUSICFS_TREE_IDLE_SECONDS") ?? "300");
  return Number.isFinite(v) && v >= 0 ? v * 1000 : 300_000;
}

/** The tracks of `tracks` under this mount's libraries. */
function* ourTracks(tracks: Iterable<TrackRecord>, origins: Origin[]): Generator<TrackRecord> {
  const ids = new Set(origins.map((o) => o.id));
  for (const t of tracks) if (ids.has(t.originId)) yield t;
}
