/**
 * Inode numbering of the virtual tree (see tree.ts for the contract): the fixed numbers, track
 * numbers derived from database ids, and the hashed numbers of everything else, each
 * remembered with its key for the life of the tree so that no number is handed out twice.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { INO, InodeTable, TRACK_INO_BASE } from "./inodes.ts";
 *
 * const inodes = new InodeTable();
 * const a = inodes.hash("d/Artists/Queen");
 * assert.equal(inodes.hash("d/Artists/Queen"), a); // same key, same number
 * assert.ok(a >= 16 && a < TRACK_INO_BASE && a !== INO.root);
 * assert.equal(inodes.track(7), TRACK_INO_BASE + 7);
 * ```
 *
 * @module
 */
import { logger } from "../log/mod.ts";

const log = logger("fs", "tree");

/** Fixed inode numbers. */
export const INO = {
  root: 1,
  artists: 2,
  albums: 3,
  genres: 4,
  years: 5,
  search: 6,
  musicfs: 7,
  status: 8,
  problems: 9,
  playlists: 10,
} as const;

/** Track inodes are this plus the track id. */
export const TRACK_INO_BASE = 2 ** 52;
/** Hashed inodes start here: the fixed numbers below stay free for new fixed nodes. */
export const FIRST_HASHED_INO = 16;

/**
 * cyrb53 (bryc, public domain) truncated to 52 bits. Part of the inode contract: do not
 * change it, or every directory inode changes across an upgrade.
 */
export function hash52(s: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (h2 & 0xfffff) * 0x100000000 + (h1 >>> 0);
}

/** Every hashed inode handed out, with its key: the no-reuse guarantee. */
export class InodeTable {
  /** Every hashed inode handed out, with its key. */
  readonly keys = new Map<number, string>();

  /** The inode of track `id`: {@link TRACK_INO_BASE} + id, or a hash for an odd id. */
  track(id: number): number {
    if (Number.isSafeInteger(id) && id >= 0 && id < TRACK_INO_BASE) return TRACK_INO_BASE + id;
    return this.hash(`t${id}`);
  }

  /** The inode of the object named by `key` (see tree.ts for the keys). */
  hash(key: string): number {
    let h = hash52(key);
    for (let n = 1;; n++) {
      if (h >= FIRST_HASHED_INO) {
        const holder = this.keys.get(h);
        if (holder === undefined) {
          this.keys.set(h, key);
          return h;
        }
        if (holder === key) return h;
        log.warn("Inode hash collision between {a} and {b}; probing", { a: holder, b: key });
      }
      h = hash52(`${key}\0${n}`);
    }
  }
}
