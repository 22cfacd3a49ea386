/**
 * What a scan knows of the scope it walks, without a Map of every stored file: at 1M tracks
 * that Map held most of the daemon's 460 MB heap for the whole revalidating scan at each start.
 * The files of a walk batch are looked up by path in one query, and marked seen by their ids in
 * a bitmap (ids are never reused; 1M files: 125 KB); the files not seen are read back page by
 * page at the end. Problems, which are few, stay in a Map.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { Database } from "./db.ts";
 * import { KnownEntries } from "./known_entries.ts";
 *
 * const db = Database.open(":memory:");
 * const o = db.ensureOrigin("/music");
 * const file = (relPath: string) => ({ originId: o.id, relPath, ext: "mp3", size: 1, mtimeMs: 1, tags: {} });
 * db.applyBatch({ files: [file("a/1.mp3"), file("a/2.mp3"), file("b/3.mp3")] });
 * const known = new KnownEntries(db, o.id, "a");
 * assert.equal(known.take("a/1.mp3")?.size, 1);
 * assert.deepEqual([...known.unseen()], ["a/2.mp3"]);
 * db.close();
 * ```
 *
 * @module
 */
import type { Database, KnownEntry } from "./db.ts";

/** Files read back per query by {@link KnownEntries.unseen}. */
const PAGE = 2000;

/** The stored files and problems of a scan's scope, as the walk meets them. */
export class KnownEntries {
  readonly #db: Database;
  readonly #originId: number;
  readonly #scope: string;
  readonly #problems: Map<string, KnownEntry>;
  /** Files up to this id were stored when the scan began; later ones are its own. */
  readonly #lastId: number;
  readonly #seen: Uint8Array;
  /** Whether any file was stored in the scope (a first scan asks nothing per file). */
  readonly #files: boolean;
  /** Whether a track or a remembered problem was stored in the scope when the scan began. */
  readonly any: boolean;

  constructor(db: Database, originId: number, scope: string) {
    this.#db = db;
    this.#originId = originId;
    this.#scope = scope;
    this.#lastId = db.lastFileId();
    this.#seen = new Uint8Array(Math.floor(this.#lastId / 8) + 1);
    this.#problems = db.knownProblems(originId, scope);
    this.#files = db.hasKnownFile(originId, scope);
    this.any = this.#files || this.#problems.size > 0;
  }

  /** What is known of `relPath` (its track, else its problem); from now on it counts as seen. */
  take(relPath: string): KnownEntry | undefined {
    return this.takeAll([relPath])[0];
  }

  #see(id: number): void {
    if (id <= this.#lastId) this.#seen[Math.floor(id / 8)] |= 1 << (id % 8);
  }

  /** {@link take} for each of `relPaths` (a walk batch's files), in one query. */
  takeAll(relPaths: readonly string[]): (KnownEntry | undefined)[] {
    const out: (KnownEntry | undefined)[] = new Array(relPaths.length);
    const files = this.#files ? this.#db.knownFiles(this.#originId, relPaths) : undefined;
    for (let i = 0; i < relPaths.length; i++) {
      const problem = this.#problems.get(relPaths[i]);
      if (problem) this.#problems.delete(relPaths[i]);
      const file = files?.[i];
      if (file) this.#see(file[0]);
      out[i] = file ? file[1] : problem;
    }
    return out;
  }

  /** The paths stored when the scan began and not taken since: files (by path), then problems. */
  *unseen(): Generator<string> {
    const scope = this.#scope;
    if (!this.#files) {
      yield* this.#problems.keys();
      return;
    }
    if (scope !== "") {
      const exact = this.#db.knownFiles(this.#originId, [scope])[0];
      if (exact && this.#unseenId(exact[0])) yield scope;
    }
    let after = scope === "" ? "" : `${scope}/`;
    const before = scope === "" ? undefined : `${scope}0`;
    for (;;) {
      const page = this.#db.filesPage(this.#originId, after, before, PAGE);
      for (const [id, path] of page) if (this.#unseenId(id)) yield path;
      if (page.length < PAGE) break;
      after = page[page.length - 1][1];
    }
    yield* this.#problems.keys();
  }

  #unseenId(id: number): boolean {
    return id <= this.#lastId && (this.#seen[Math.floor(id / 8)] & (1 << (id % 8))) === 0;
  }
}
