/**
 * `musicfs search <query...> [--limit N] [--json]`: asks the running daemon (GET /search), or
 * with no daemon (or one that does not answer in time) answers from the state dir alone, read-only: library.db plus the search
 * snapshot (rebuilt in memory when damaged or stale), paths from a tree built like the
 * daemon's.
 *
 * @module
 */
import {
  ControlRequestError,
  DaemonNotRunningError,
  DaemonTimeoutError,
  SEARCH_LIMIT,
} from "../../daemon/mod.ts";
import {
  type CoverImage,
  type Layout,
  LayoutError,
  parseLayout,
  TRACK_INO_BASE,
  VirtualTree,
} from "../../fs/mod.ts";
import { Database, DatabaseCorruptedError } from "../../library/mod.ts";
import { SearchIndex } from "../../search/mod.ts";
import {
  askDaemon,
  CommandError,
  type CommandIo,
  consoleIo,
  type DaemonOptions,
  reportError,
  statePaths,
} from "./common.ts";
import { type SearchHit, toSearchHit } from "../../daemon/control.ts";

export { type SearchHit, toSearchHit };

/** The body of GET /search. */
export interface SearchAnswer {
  results: SearchHit[];
}

/** Options of {@link searchCommand}. */
export interface SearchOptions extends DaemonOptions {
  /** The words to look for (the CLI joins its arguments with spaces). */
  query: string;
  /** Most matches shown, 1..1000. Default 20. */
  limit?: number;
  /** Print `{ mountpoint, source, results }` as JSON instead of one path per line. */
  json?: boolean;
  /**
   * Prefix of the printed paths when no daemon answers (a running daemon reports its own).
   * Without it, offline paths are printed as they are inside the mount.
   */
  mountpoint?: string;
  /** The `--layout` of the /Artists view, for offline answers. Default: the default layout. */
  layout?: Layout | string;
  /** Where to print; default stdout/stderr. */
  io?: CommandIo;
}

/** The {@link SearchHit} of `track`: the shape the daemon's GET /search handler answers. */

/**
 * Prints the best matches of `opts.query`. Resolves to the exit code: 0 (also when nothing
 * matches), 1 when neither the daemon nor the state dir can answer, 2 for a bad limit, query
 * or layout.
 */
export async function searchCommand(opts: SearchOptions): Promise<number> {
  const io = opts.io ?? consoleIo;
  try {
    const query = opts.query.trim();
    if (!query) {
      throw new CommandError(
        "nothing to search for",
        "give some words: musicfs search <query...>",
        2,
      );
    }
    const limit = opts.limit ?? SEARCH_LIMIT.default;
    if (!Number.isInteger(limit) || limit < 1 || limit > SEARCH_LIMIT.max) {
      throw new CommandError(
        `invalid --limit ${opts.limit}`,
        `use a whole number from 1 to ${SEARCH_LIMIT.max}`,
        2,
      );
    }
    let answer = await fromDaemon(opts, query, limit);
    let source: "daemon" | "offline" = "daemon";
    if (!answer) {
      source = "offline";
      answer = {
        mountpoint: opts.mountpoint ?? null,
        results: await searchOffline(opts.stateDir, query, limit, opts.layout),
      };
    }
    const mountpoint = answer.mountpoint?.replace(/\/+$/, "") ?? null;
    if (opts.json) {
      io.out(JSON.stringify({ mountpoint, source, results: answer.results }, null, 2));
    } else if (answer.results.length === 0) {
      // On stderr: stdout stays a clean list of paths for scripts.
      io.err(`musicfs: no tracks match "${query}"`);
    } else {
      for (const hit of answer.results) io.out(`${mountpoint ?? ""}${hit.path}`);
    }
    return 0;
  } catch (e) {
    return reportError(io, e, "see the daemon's log, or run: musicfs check");
  }
}

/**
 * The daemon's answer, with its mountpoint; null when no daemon answers or its index is not
 * ready (503), so the state dir answers instead.
 */
async function fromDaemon(
  opts: SearchOptions,
  query: string,
  limit: number,
): Promise<{ mountpoint: string | null; results: SearchHit[] } | null> {
  let answer: SearchAnswer;
  try {
    const q = new URLSearchParams({ q: query, limit: String(limit) });
    answer = (await askDaemon(opts, "GET", `/search?${q}`)) as SearchAnswer;
  } catch (e) {
    if (e instanceof DaemonNotRunningError) return null;
    if (e instanceof CommandError && (e.cause as ControlRequestError)?.status === 503) return null;
    if (e instanceof CommandError && e.cause instanceof DaemonTimeoutError) {
      // A stopped or stuck daemon: the state dir answers as well, read-only.
      (opts.io ?? consoleIo).err(`musicfs: ${e.what}; answering from the state dir instead`);
      return null;
    }
    throw e;
  }
  let mountpoint: string | null = null;
  try {
    const status = (await askDaemon(opts, "GET", "/status")) as { mountpoint?: string };
    mountpoint = typeof status?.mountpoint === "string" ? status.mountpoint : null;
  } catch {
    // The paths are right without it, just not prefixed.
  }
  return { mountpoint, results: answer?.results ?? [] };
}

/**
 * Answers `query` from the state dir alone, never writing to it: opens library.db read-only,
 * loads the search snapshot (rebuilding it in memory from the database when it is missing,
 * damaged or stale) and builds the virtual tree for the paths.
 * @throws {CommandError} when the state dir holds no library or a damaged one
 */
export async function searchOffline(
  stateDir: string,
  query: string,
  limit: number,
  layout?: Layout | string,
): Promise<SearchHit[]> {
  let parsed: Layout | undefined;
  try {
    parsed = typeof layout === "string" ? parseLayout(layout) : layout;
  } catch (e) {
    if (e instanceof LayoutError) {
      throw new CommandError(e.message, "fix the --layout template", 2, { cause: e });
    }
    throw e;
  }
  const paths = statePaths(stateDir);
  try {
    await Deno.stat(paths.db);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new CommandError(
      `musicfs is not running and ${stateDir} holds no library`,
      "mount one first: musicfs mount <library>",
    );
  }
  const damaged = (e: unknown) =>
    new CommandError(
      `the library database ${paths.db} is damaged`,
      "repair it with: musicfs check --repair",
      1,
      { cause: e },
    );
  let db: Database;
  try {
    db = Database.open(paths.db, { readOnly: true });
  } catch (e) {
    throw e instanceof DatabaseCorruptedError ? damaged(e) : e;
  }
  try {
    const index = await SearchIndex.openWithRecovery(paths.snapshot, {
      readOnly: true,
      generation: db.generation,
      rebuildFrom: () => db.allTracks(),
    });
    const found = index.search(query, limit);
    index.close();
    if (found.length === 0) return [];
    // The whole tree, not just the hits: collision suffixes depend on every neighbour.
    const tree = new VirtualTree({
      origins: db.origins(),
      tracks: db.allTracks(),
      covers: db.covers() as CoverImage[],
      problems: db.problems(),
      // The daemon's stored names, so offline paths are the ones the mount shows.
      names: db.names(),
      uid: Deno.uid() ?? 0,
      gid: Deno.gid() ?? 0,
      layout: parsed,
    });
    const hits: SearchHit[] = [];
    for (const { id, score } of found) {
      const node = tree.get(TRACK_INO_BASE + id);
      const path = tree.pathOf(TRACK_INO_BASE + id);
      // A hit the tree does not hold (a track removed since the snapshot) is no answer.
      if (!node || node.kind !== "track" || !path) continue;
      hits.push(toSearchHit(node.track, score, path));
    }
    return hits;
  } catch (e) {
    // Open does not read every page; damage inside the file surfaces on the first full read.
    if (e instanceof Error && /malformed|not a database|corrupt/i.test(e.message)) {
      throw damaged(e);
    }
    throw e;
  } finally {
    db.close();
  }
}
