/**
 * The cross-check of every served track against its source file at start, off the loop: a
 * path that does not exist (a file deleted while stopped, or a damaged row that passed every
 * check) leaves the tree at once instead of when the rescan reaches it.
 */
import { TRACK_INO_BASE, type VirtualTree } from "../fs/mod.ts";
import { checkSources, type TrackRecord } from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import type { ChangeHub } from "./change_hub.ts";
import type { DaemonStatus } from "./status.ts";

const log = logger("daemon");

/** What {@link checkServedSources} checks and where its findings go. */
export interface ServedSourcesCheck {
  /** The tracks the tree started with. */
  tracks: readonly TrackRecord[];
  /** Each origin's root by id. */
  originPath: ReadonlyMap<number, string>;
  tree: Pick<VirtualTree, "get">;
  /** Takes missing tracks out of the tree and search. */
  hub: Pick<ChangeHub, "removeTracks">;
  /** The start's integrity report: gets the `sources` figures. */
  integrity: DaemonStatus["integrity"];
}

/** Check that the served tracks' sources exist; remove those that do not. */
export async function checkServedSources(c: ServedSourcesCheck, signal: AbortSignal) {
  const result = await checkSources(c.tracks, c.originPath, { signal });
  const missing = result.missing.filter((t) => c.tree.get(TRACK_INO_BASE + t.id));
  if (c.integrity) {
    c.integrity.sources = {
      checked: result.checked,
      missing: result.missing.length,
      skipped: result.skipped,
      ms: result.ms,
    };
  }
  if (missing.length) {
    log.warn(
      "{count} of {checked} tracks name a source that is not there (first: {first}); " +
        "removed from the tree until a scan finds them",
      {
        count: missing.length,
        checked: result.checked,
        first: `${c.originPath.get(missing[0].originId)}/${missing[0].relPath}`,
      },
    );
    c.hub.removeTracks(missing);
  } else {
    log.info("Sources of {checked} tracks checked in {ms} ms: all there", {
      checked: result.checked,
      ms: result.ms,
    });
  }
}
