/**
 * Grouping for the views: spellings that fold alike form one {@link Group} showing the most
 * common spelling; an {@link Album} is (album artist, album) with its most common title
 * spelling and year.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { Group } from "./grouping.ts";
 *
 * const g = new Group("the beatles");
 * g.counts.set("The Beatles", 2).set("the beatles", 1);
 * assert.ok(g.settle());
 * assert.equal(g.display, "The Beatles");
 * ```
 *
 * @module
 */
import type { TrackRecord } from "../library/types.ts";
import type { Dir, Track } from "./nodes.ts";
import {
  albumArtistName,
  albumFolderParts,
  artistName,
  compare,
  fitName,
  present,
  sanitizeName,
  UNKNOWN_GENRE,
  UNKNOWN_YEAR,
} from "./naming.ts";

/** Upper-case letters in `s`. */
function capitals(s: string): number {
  let n = 0;
  for (const c of s) if (c !== c.toLowerCase()) n++;
  return n;
}

/**
 * Tie-break between two equally common spellings: one starting with a capital first, then
 * the one with fewer capitals, then code unit order. So `The Beatles` beats `the beatles`
 * and `THE BEATLES`, and `Rock` beats `ROCK` and `rock`, whatever order tracks come in.
 */
export function betterSpelling(a: string, b: string): boolean {
  const ua = a !== "" && a[0] !== a[0].toLowerCase();
  const ub = b !== "" && b[0] !== b[0].toLowerCase();
  if (ua !== ub) return ua;
  const ca = capitals(a);
  const cb = capitals(b);
  if (ca !== cb) return ca < cb;
  return compare(a, b) < 0;
}

/**
 * Every spelling of one name that folds to the same key (see foldKey): the folder shows the
 * most common spelling (NFC); ties go by {@link betterSpelling}.
 */
export class Group {
  readonly counts = new Map<string, number>();
  display = "";
  /** The albums showing this name (album artists only; other groups are found by a scan). */
  readonly albums = new Set<Album>();
  /** `[this]`, shared by every track whose only genre this is (one array, not one per track). */
  readonly single: readonly Group[] = [this];
  constructor(readonly key: string) {}
  /** Recompute the display spelling; true when it changed. */
  settle(): boolean {
    let best = "";
    let n = 0;
    for (const [s, c] of this.counts) {
      if (c > n || (c === n && betterSpelling(s, best))) {
        best = s;
        n = c;
      }
    }
    if (best === this.display) return false;
    this.display = best;
    return true;
  }
}

const nfcCache = new Map<string, string>();
/** NFC, remembered: tag values repeat once per track of an album. */
export function nfc(s: string): string {
  let v = nfcCache.get(s);
  if (v === undefined) {
    v = s.normalize("NFC");
    if (nfcCache.size > 200_000) nfcCache.clear();
    nfcCache.set(s, v);
  }
  return v;
}

/** Add `by` to the count of `k`, dropping counts that reach zero. */
export function bump<K>(m: Map<K, number>, k: K, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n <= 0) m.delete(k);
  else m.set(k, n);
}

/** Every genre of a track (several GENRE fields, `;`-separated), or `Unknown Genre`. */
export function genresOf(t: TrackRecord): readonly string[] {
  if (!t.genres?.length || (t.genres.length === 1 && t.genres[0] === t.genre)) {
    // The common case: one genre (or none), no separators.
    const g = present(t.genre);
    if (g === undefined) return UNKNOWN_GENRES;
    if (!g.includes(";") && !g.includes("\0")) return [g];
  }
  const out: string[] = [];
  const list = t.genres && t.genres.length ? t.genres : t.genre !== undefined ? [t.genre] : [];
  for (const g of list) {
    if (g.includes(";") || g.includes("\0")) {
      for (const part of g.split(/[;\0]/)) {
        const p = present(part);
        if (p !== undefined) out.push(p);
      }
    } else {
      const p = present(g);
      if (p !== undefined) out.push(p);
    }
  }
  if (out.length === 0) out.push(UNKNOWN_GENRE);
  return out;
}

const UNKNOWN_GENRES: readonly string[] = [UNKNOWN_GENRE];

/** `{artistsort}` as the layout renders it. */
export function artistSortOf(t: TrackRecord): string {
  return present(t.artistSort) ?? artistName(t);
}

/** `{albumartistsort}` as the layout renders it. */
export function albumArtistSortOf(t: TrackRecord): string {
  return present(t.albumArtistSort) ?? present(t.albumArtist) ?? present(t.artistSort) ??
    albumArtistName(t);
}

/**
 * An album: (album artist, album title) compared by foldKey, whatever per-track years or
 * genres say. Its title shows the most common spelling, its year the most common year (ties:
 * the earliest).
 */
export class Album {
  readonly tracks = new Set<Track>();
  readonly titles = new Map<string, number>();
  readonly years = new Map<number, number>();
  discs = 1;
  title = "";
  year: number | undefined = undefined;
  #sig = "\0";
  /** Sanitised names, shared by every track of the album. */
  artistDir = "";
  albumDir = "";
  albumsDir = "";
  yearDir = "";
  yearsAlbumDir = "";
  /** The album's folder in each view, remembered to skip walking the path for every track. */
  readonly leaves: (Dir | undefined)[] = [undefined, undefined, undefined, undefined];
  /** Its folder under each genre, with the genre spelling it was made for. */
  readonly genreLeaves = new Map<Group, [Dir, string]>();
  constructor(readonly key: string, readonly aa: Group) {}

  /** Recompute title, year and folder names; true when the names changed. */
  settle(): boolean {
    let title = "";
    let n = 0;
    for (const [s, c] of this.titles) {
      if (c > n || (c === n && betterSpelling(s, title))) {
        title = s;
        n = c;
      }
    }
    let year: number | undefined;
    n = 0;
    for (const [y, c] of this.years) {
      if (c > n || (c === n && y < year!)) {
        year = y;
        n = c;
      }
    }
    this.title = title;
    this.year = year;
    const sig = `${this.aa.display}\0${title}\0${year ?? ""}`;
    if (sig === this.#sig) return false;
    this.#sig = sig;
    const artist = this.aa.display;
    const y = year === undefined ? undefined : String(year);
    const folder = albumFolderParts(title, y);
    this.artistDir = sanitizeName(artist);
    this.albumDir = fitName(folder);
    this.albumsDir = fitName([...folder, { text: " - ", fixed: true }, { text: artist }]);
    this.yearDir = y ?? UNKNOWN_YEAR;
    this.yearsAlbumDir = fitName([{ text: artist }, { text: " - ", fixed: true }, {
      text: title,
    }]);
    this.leaves.fill(undefined);
    this.genreLeaves.clear();
    return true;
  }
}
