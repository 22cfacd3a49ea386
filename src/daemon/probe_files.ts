/**
 * One known track file per library root, for the health monitor: an unmounted share leaves an
 * empty mountpoint that a stat of the root alone would call healthy.
 */
import type { TrackRecord } from "../library/mod.ts";

/** The probe file of each origin, kept current as tracks come and go. */
export class ProbeFiles {
  readonly #originPath: ReadonlyMap<number, string>;
  readonly #files = new Map<number, string>();

  /** `originPath`: each origin's root by id. */
  constructor(originPath: ReadonlyMap<number, string>) {
    this.#originPath = originPath;
  }

  /** Take the first track of each origin from `tracks` (stops once every origin has one). */
  seed(tracks: Iterable<TrackRecord>): void {
    for (const t of tracks) {
      if (!this.#files.has(t.originId)) this.#files.set(t.originId, this.#pathOf(t));
      if (this.#files.size === this.#originPath.size) break;
    }
  }

  /** Drop probe files that were removed; give origins without one the first track added. */
  update(change: { added: readonly TrackRecord[]; removed: readonly TrackRecord[] }): void {
    for (const t of change.removed) {
      if (this.#files.get(t.originId) === this.#pathOf(t)) this.#files.delete(t.originId);
    }
    for (const t of change.added) {
      if (!this.#files.has(t.originId)) this.#files.set(t.originId, this.#pathOf(t));
    }
  }

  /** The absolute path of origin `originId`'s probe file, if it has one. */
  get(originId: number): string | undefined {
    return this.#files.get(originId);
  }

  #pathOf(t: TrackRecord): string {
    return `${this.#originPath.get(t.originId)}/${t.relPath}`;
  }
}
