/**
 * How tracks and queries become search terms. Indexing and querying share these functions, so
 * a change here changes what a snapshot means: bump `SNAPSHOT_FORMAT_VERSION` with it.
 */
import type { TrackRecord } from "../library/types.ts";

/** The indexed fields, in the order minisearch numbers them. */
export const FIELDS = [
  "title",
  "artist",
  "albumArtist",
  "album",
  "genre",
  "year",
  "fileName",
] as const;

/** One indexed field. */
export type Field = typeof FIELDS[number];

/** Relative weight of a match in each field: title and artist above album, album above genre. */
export const BOOSTS: Readonly<Record<Field, number>> = {
  title: 3,
  artist: 3,
  albumArtist: 2.5,
  album: 2,
  genre: 1,
  year: 1,
  fileName: 1,
};

/** Longer terms are cut to this many UTF-16 units, in documents and queries alike. */
export const MAX_TERM_LENGTH = 64;

/** The document minisearch sees: field values already reduced to space-separated terms. */
export type SearchDocument = { id: number } & Partial<Record<Field, string>>;

// Spaces, punctuation, symbols and control characters all separate words: "AC/DC" is "ac dc",
// "Guns N' Roses" is "guns n roses", on both the indexing and the query side.
const SEPARATORS = /[\p{Z}\p{P}\p{S}\p{C}]+/u;
const MARKS = /\p{M}+/gu;

// In ASCII, the separators above are exactly the characters other than letters and digits, and
// NFKD changes nothing: most tags take this path, several times faster than the general one.
// deno-lint-ignore no-control-regex -- control characters are ASCII too (and separators)
const ASCII = /^[\x00-\x7f]*$/;
const ASCII_SEPARATORS = /[^a-z0-9]+/;

/** Split `text` into normalised terms: accents folded, lower case, cut to MAX_TERM_LENGTH. */
export function terms(text: string): string[] {
  const out: string[] = [];
  if (ASCII.test(text)) {
    for (const t of text.toLowerCase().split(ASCII_SEPARATORS)) {
      if (t !== "") out.push(t.length > MAX_TERM_LENGTH ? t.slice(0, MAX_TERM_LENGTH) : t);
    }
    return out;
  }
  for (const raw of text.split(SEPARATORS)) {
    if (raw === "") continue;
    const t = normaliseTerm(raw);
    if (t !== "") out.push(t);
  }
  return out;
}

/** Normalise one already separated word (what minisearch's `processTerm` does here). */
export function normaliseTerm(word: string): string {
  // NFKD then dropping marks folds "Beyoncé" to "beyonce" and full-width letters to ASCII.
  let t = word.normalize("NFKD").replace(MARKS, "").toLowerCase();
  if (t.length > MAX_TERM_LENGTH) {
    t = t.slice(0, MAX_TERM_LENGTH);
    // Never leave half a surrogate pair behind: it would not round-trip through UTF-8.
    if (/[\uD800-\uDBFF]$/.test(t)) t = t.slice(0, -1);
  }
  return t;
}

/** The source file name without directory and extension. */
export function baseName(relPath: string): string {
  const name = relPath.slice(relPath.lastIndexOf("/") + 1);
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

/**
 * The document indexed for `track`. Terms already present in a stronger field are left out of
 * `albumArtist` and `fileName`: they would not change which documents match, and repeating
 * them in every track would double the postings a query has to walk.
 */
export function toDocument(track: TrackRecord): SearchDocument {
  const doc: SearchDocument = { id: track.id };
  const seen = new Set<string>();
  const put = (field: Field, value: string | undefined, onlyNew: boolean) => {
    if (value === undefined) return;
    let ts = terms(value);
    if (onlyNew) ts = ts.filter((t) => !seen.has(t));
    for (const t of ts) seen.add(t);
    if (ts.length > 0) doc[field] = ts.join(" ");
  };
  const name = baseName(track.relPath);
  put("title", track.title ?? name, false);
  put("artist", track.artist, false);
  put("albumArtist", track.albumArtist, true);
  put("album", track.album, false);
  put("genre", track.genre, false);
  if (track.year !== undefined && Number.isFinite(track.year)) doc.year = String(track.year);
  // Bare track numbers ("01 - ...") in file names would make every "1" query match everything.
  const fileTerms = terms(name).filter((t) => !seen.has(t) && !/^\d{1,3}$/.test(t));
  if (fileTerms.length > 0) doc.fileName = fileTerms.join(" ");
  return doc;
}

const encoder = new TextEncoder();

/** `text` cut to at most `maxBytes` bytes of UTF-8, on a character boundary. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text;
  const bytes = encoder.encode(text);
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes);
  // Back up to the first byte of a UTF-8 sequence (continuation bytes are 10xxxxxx).
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}
