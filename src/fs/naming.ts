/**
 * Names of the virtual tree (SPEC.md section 2): tag fallbacks, the `[D-]NN - Title` file
 * name, sanitising of one path component, and the deterministic ` (2)`, ` (3)` suffixes that
 * settle name collisions.
 *
 * Sanitising rules, in order:
 * - `/` and NUL become `_`;
 * - runs of other control characters (C0, DEL, C1, U+2028/U+2029; tabs and newlines included)
 *   become one space, so a multi-line tag reads as one line;
 * - unpaired UTF-16 surrogates become U+FFFD, so the byte length computed here is the one the
 *   kernel sees;
 * - leading and trailing blanks are trimmed; a name left empty becomes `_`;
 * - the name is cut to 255 bytes of UTF-8 at a code point boundary, keeping the extension, a
 *   collision suffix and the fixed parts of a name (` (1999)`, ` - `, `NN - `) whole: only the
 *   tag text is shortened ({@link fitName});
 * - a leading `.` becomes `_`, so no entry is hidden (`...Baby` -> `_..Baby`, `.` -> `_`).
 *
 * Grouping ({@link foldKey}): artist, album artist, album and genre compare after NFC and
 * Unicode case folding, so `Björk` (NFC or NFD) and `björk`, or `Rock` and `ROCK`, are one.
 *
 * @module
 */
import type { Tags } from "../library/types.ts";

/** Longest name, in bytes of UTF-8, that Linux accepts for one path component. */
export const MAX_NAME_BYTES = 255;
/** Album artist (and artist) fallback. */
export const UNKNOWN_ARTIST = "Unknown Artist";
/** Album fallback. */
export const UNKNOWN_ALBUM = "Unknown Album";
/** Genre fallback. */
export const UNKNOWN_GENRE = "Unknown Genre";
/** Year fallback, used where a year cannot simply be left out (the /Years view). */
export const UNKNOWN_YEAR = "Unknown Year";

// Extensions longer than this are not worth keeping whole at the expense of the stem.
const MAX_EXT_BYTES = 32;

// deno-lint-ignore no-control-regex -- control characters are exactly what is being matched
const NEEDS_CLEANING = /[\x00-\x1f\x7f-\x9f/\u2028\u2029]/;
// deno-lint-ignore no-control-regex -- NUL is exactly what is being matched
const SLASH_OR_NUL = /[/\x00]/g;
// deno-lint-ignore no-control-regex -- control characters are exactly what is being matched
const CONTROL_RUN = /[\x01-\x1f\x7f-\x9f\u2028\u2029]+/g;

/** Bytes of `s` in UTF-8, counting an unpaired surrogate as U+FFFD (3 bytes). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && isLowSurrogate(s.charCodeAt(i + 1))) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** The longest prefix of `s` of at most `maxBytes` bytes of UTF-8, never splitting a code point. */
export function cutUtf8(s: string, maxBytes: number): string {
  // A UTF-16 unit never takes more than 3 bytes (a pair takes 4 for 2 units).
  if (s.length * 3 <= maxBytes) return s;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let bytes = 3;
    let units = 1;
    if (c < 0x80) bytes = 1;
    else if (c < 0x800) bytes = 2;
    else if (c >= 0xd800 && c < 0xdc00 && isLowSurrogate(s.charCodeAt(i + 1))) {
      bytes = 4;
      units = 2;
    }
    if (n + bytes > maxBytes) return s.slice(0, i);
    n += bytes;
    i += units - 1;
  }
  return s;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c < 0xe000;
}

/** `/`, NUL and control characters replaced, surrogates made whole (blanks kept). */
function cleanChars(s: string): string {
  if (NEEDS_CLEANING.test(s)) {
    s = s.replace(SLASH_OR_NUL, "_").replace(CONTROL_RUN, " ");
  }
  if (!s.isWellFormed()) s = s.toWellFormed();
  return s;
}

/** {@link cleanChars}, blanks trimmed. */
function clean(s: string): string {
  return cleanChars(s).trim();
}

/** A leading `.` becomes `_`: nothing in the tree is hidden (`.` -> `_`, `..` -> `_.`). */
function unhide(name: string): string {
  return name.charCodeAt(0) === 0x2e ? `_${name.slice(1)}` : name;
}

/**
 * Join a stem, a suffix and an extension into one valid name: the stem alone is cut so the
 * whole fits in 255 bytes. `stem` and `ext` must already be {@link clean}.
 */
function join(stem: string, ext: string, suffix: string): string {
  let tail = ext === "" ? suffix : `${suffix}.${ext}`;
  if (utf8Length(ext) > MAX_EXT_BYTES) {
    stem = ext === "" ? stem : `${stem}.${ext}`;
    tail = suffix;
  }
  const room = MAX_NAME_BYTES - utf8Length(tail);
  if (stem.length * 3 > room) stem = cutUtf8(stem, room).trimEnd();
  if (stem === "") stem = "_";
  return unhide(stem + tail);
}

/** One piece of a name for {@link fitName}: tag text (shortened first) or fixed text. */
export interface NamePart {
  /** The text, not yet sanitised. */
  text: string;
  /** Fixed text (` (1999)`, ` - `, a track number) is kept whole when the name is cut. */
  fixed?: boolean;
}

/**
 * A valid name made of `parts` (plus `.ext`): like {@link sanitizeName}, but when the whole is
 * over 255 bytes only the variable parts are shortened, the longest first, so ` (1999)` or
 * ` - Artist`'s separator survive: `Very Long Album… (1999)`, never `Very Long Album (19`.
 */
export function fitName(parts: readonly NamePart[], ext = ""): string {
  const texts = parts.map((p) => cleanChars(p.text));
  let whole = texts.join("");
  const e = clean(ext);
  const tail = e === "" ? "" : `.${e}`;
  if (utf8Length(whole.trim()) + utf8Length(tail) <= MAX_NAME_BYTES || e.length > MAX_EXT_BYTES) {
    return join(whole.trim(), e, "");
  }
  // Leading and trailing blanks of the whole go first, so the room counts the final name.
  texts[0] = texts[0].trimStart();
  texts[texts.length - 1] = texts[texts.length - 1].trimEnd();
  let fixedBytes = utf8Length(tail);
  const variable: number[] = [];
  for (let i = 0; i < texts.length; i++) {
    if (parts[i].fixed) fixedBytes += utf8Length(texts[i]);
    else variable.push(i);
  }
  let room = MAX_NAME_BYTES - fixedBytes;
  if (room < variable.length || variable.length === 0) return join(whole.trim(), e, "");
  // Fair shares: the short parts keep all they have, the long ones split what remains.
  variable.sort((a, b) => utf8Length(texts[a]) - utf8Length(texts[b]));
  for (let k = 0; k < variable.length; k++) {
    const i = variable[k];
    const share = Math.floor(room / (variable.length - k));
    const len = utf8Length(texts[i]);
    if (len > share) texts[i] = cutUtf8(texts[i], share).trimEnd() || "_";
    room -= utf8Length(texts[i]);
  }
  whole = texts.join("").trim();
  return join(whole, e, "");
}

/** Case folding as Unicode's full folding does it for nearly all text (`ß` -> `ss`). */
const foldCache = new Map<string, string>();

/**
 * The grouping key of a tag: NFC, then Unicode case folding (approximated by upper- then
 * lower-casing, which folds `ß`/`SS`, final sigma and most scripts alike), then NFC again.
 */
export function foldKey(s: string): string {
  let k = foldCache.get(s);
  if (k !== undefined) return k;
  k = s.normalize("NFC").toUpperCase().toLowerCase().normalize("NFC");
  // Tag values repeat a lot (one per album or artist); the cache is bounded all the same.
  if (foldCache.size > 200_000) foldCache.clear();
  foldCache.set(s, k);
  return k;
}

/**
 * A valid name for one path component: `stem` (plus `.ext` when `ext` is given, without its
 * dot) sanitised by the module's rules. Never empty, never `.` or `..`, at most 255 bytes.
 */
export function sanitizeName(stem: string, ext = ""): string {
  return join(clean(stem), clean(ext), "");
}

/**
 * `name` (a sanitised name ending in `.ext`, or no extension when `ext` is empty) with the
 * collision suffix ` (n)` put before the extension, still within 255 bytes.
 */
export function withCollisionSuffix(name: string, ext: string, n: number): string {
  const e = clean(ext);
  const dotted = `.${e}`;
  const stem = e !== "" && name.endsWith(dotted) ? name.slice(0, -dotted.length) : name;
  return join(stem, e !== "" && stem !== name ? e : "", ` (${n})`);
}

/** The tag with blanks trimmed, or undefined when missing or blank. */
export function present(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  const t = s.trim();
  return t === "" ? undefined : t;
}

/** A positive integer tag (track, disc, year), or undefined. */
export function positive(n: number | undefined): number | undefined {
  return n !== undefined && Number.isInteger(n) && n > 0 ? n : undefined;
}

/** AlbumArtist -> Artist -> `Unknown Artist`. */
export function albumArtistName(t: Tags): string {
  return present(t.albumArtist) ?? present(t.artist) ?? UNKNOWN_ARTIST;
}

/** Artist -> AlbumArtist -> `Unknown Artist` (the track's own artist, for `/.search` names). */
export function artistName(t: Tags): string {
  return present(t.artist) ?? present(t.albumArtist) ?? UNKNOWN_ARTIST;
}

/** Album -> `Unknown Album`. */
export function albumName(t: Tags): string {
  return present(t.album) ?? UNKNOWN_ALBUM;
}

/** Genre -> `Unknown Genre`. */
export function genreName(t: Tags): string {
  return present(t.genre) ?? UNKNOWN_GENRE;
}

/** The year as text, or undefined (left out of names; `Unknown Year` under /Years). */
export function yearText(t: Tags): string | undefined {
  const y = positive(t.year);
  return y === undefined ? undefined : String(y);
}

/** The source file name without directory and extension, e.g. `a/b/01 x.flac` -> `01 x`. */
export function fileStem(relPath: string): string {
  const base = relPath.slice(relPath.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/** Title -> source file name without extension. */
export function titleName(t: Tags & { relPath: string }): string {
  return present(t.title) ?? fileStem(t.relPath);
}

/**
 * How many discs an album has: the largest of every track's disc total and disc number.
 * Feed it every track of the album.
 */
export function discCount(tracks: Iterable<Tags>): number {
  let n = 1;
  for (const t of tracks) n = Math.max(n, positive(t.discTotal) ?? 0, positive(t.disc) ?? 0);
  return n;
}

/** One track's contribution to {@link discCount}. */
export function discsOf(t: Tags): number {
  return Math.max(1, positive(t.discTotal) ?? 0, positive(t.disc) ?? 0);
}

/**
 * The disc prefix number of a track: its disc number when its album has more than one disc
 * and the track has both a disc and a track number (no track number -> no prefix at all).
 */
export function discPrefix(t: Tags, multiDisc: boolean): number | undefined {
  return multiDisc && positive(t.track) !== undefined ? positive(t.disc) : undefined;
}

/** `[D-]NN - Title` (without extension, not sanitised); `Title` alone without a track number. */
export function trackStem(t: Tags & { relPath: string }, multiDisc: boolean): string {
  const title = titleName(t);
  const no = positive(t.track);
  if (no === undefined) return title;
  const disc = discPrefix(t, multiDisc);
  return `${disc === undefined ? "" : `${disc}-`}${String(no).padStart(2, "0")} - ${title}`;
}

/** The sanitised file name of a track: `[D-]NN - Title.<ext>`. */
export function trackFileName(
  t: Tags & { relPath: string; ext: string },
  multiDisc: boolean,
): string {
  return sanitizeName(trackStem(t, multiDisc), t.ext);
}

/** `<Album>[ (<Year>)]`, not sanitised. */
export function albumFolder(t: Tags): string {
  const y = yearText(t);
  return y === undefined ? albumName(t) : `${albumName(t)} (${y})`;
}

/** The parts of `<Album>[ (<Year>)]` for {@link fitName}: the year is kept whole. */
export function albumFolderParts(album: string, year: string | undefined): NamePart[] {
  return year === undefined ? [{ text: album }] : [{ text: album }, {
    text: ` (${year})`,
    fixed: true,
  }];
}

/** One entry that wants a name in a directory. */
export interface NameClaim {
  /** The sanitised name it wants. */
  base: string;
  /** Its extension without the dot (`""` for none): the suffix goes before it. */
  ext: string;
  /** Absolute source path (origin path + relative path): who keeps the plain name. */
  sourcePath: string;
  /** Orders claims with the same source path (e.g. two links to one file); default 0. */
  tiebreak?: number;
}

/**
 * Final names for `claims` that all live in one directory. A name wanted by a single claim
 * and not in `taken` (names already held, e.g. by subdirectories) is kept as is. Claims that
 * share a name are ordered by source path: the first keeps the name (unless it is taken), the
 * others get ` (2)`, ` (3)`... before the extension, skipping every name already wanted or
 * given. The result depends only on the set of claims, never on their order, so names are
 * stable across restarts. Returns the names in the order of `claims`.
 */
export function resolveCollisions(
  claims: readonly NameClaim[],
  taken: ReadonlySet<string> = new Set(),
): string[] {
  const out = new Array<string>(claims.length);
  const groups = new Map<string, number[]>();
  for (let i = 0; i < claims.length; i++) {
    const g = groups.get(claims[i].base);
    if (g) g.push(i);
    else groups.set(claims[i].base, [i]);
  }
  const conflicted: string[] = [];
  for (const [base, idx] of groups) {
    if (idx.length === 1 && !taken.has(base)) out[idx[0]] = base;
    else conflicted.push(base);
  }
  if (conflicted.length === 0) return out;
  const used = new Set(taken);
  for (const base of groups.keys()) used.add(base);
  conflicted.sort(compare);
  for (const base of conflicted) {
    const idx = groups.get(base)!;
    idx.sort((a, b) =>
      compare(claims[a].sourcePath, claims[b].sourcePath) ||
      (claims[a].tiebreak ?? 0) - (claims[b].tiebreak ?? 0) || a - b
    );
    let k = 0;
    if (!taken.has(base)) out[idx[k++]] = base;
    let n = 2;
    for (; k < idx.length; k++) {
      let name: string;
      do name = withCollisionSuffix(base, claims[idx[k]].ext, n++); while (used.has(name));
      used.add(name);
      out[idx[k]] = name;
    }
  }
  return out;
}

/** Plain UTF-16 code unit order: fast, and the same on every machine (no locale). */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
