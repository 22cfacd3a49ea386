/**
 * Re-checks of sources an open found changed, swapped or gone: coalesced by origin over
 * 200 ms, so a player retrying a bad file does not queue a rescan per attempt.
 */
import { isInside } from "../fs/mod.ts";
import type { Origin } from "../library/mod.ts";
import { logger } from "../log/mod.ts";

const log = logger("daemon");

/** Rescans the folders (or files) of the library that reads found wrong, a batch at a time. */
export class SourceRecheck {
  readonly #origins: readonly Origin[];
  readonly #rescanPaths: (origin: Origin, relPaths: string[]) => Promise<unknown>;
  readonly #pending = new Map<number, Set<string>>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `rescanPaths`: the scanner's re-check of paths relative to an origin root. */
  constructor(
    origins: readonly Origin[],
    rescanPaths: (origin: Origin, relPaths: string[]) => Promise<unknown>,
  ) {
    this.#origins = origins;
    this.#rescanPaths = rescanPaths;
  }

  /** Re-check `path` of origin `originId` soon; with `folder`, the folder holding it. */
  later(originId: number, path: string, folder: boolean): void {
    const root = this.#origins.find((o) => o.id === originId)?.path;
    if (!root || !isInside(path, root)) return;
    let rel = path === root ? "" : path.slice(root.length + 1);
    if (folder) rel = rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "";
    let set = this.#pending.get(originId);
    if (!set) this.#pending.set(originId, set = new Set());
    set.add(rel);
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const work = [...this.#pending];
      this.#pending.clear();
      for (const [id, rels] of work) {
        const origin = this.#origins.find((o) => o.id === id)!;
        this.#rescanPaths(origin, [...rels]).catch((e) =>
          log.warn("Cannot re-check {root}: {error}", { root: origin.path, error: String(e) })
        );
      }
    }, 200);
  }
}
