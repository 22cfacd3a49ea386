/**
 * `--layout` templates for the /Artists view, e.g.
 * `{albumartist}/{album} ({year})/{disc}-{track:02} - {title}` (which is also the default).
 *
 * Syntax:
 * - `/` separates path segments; the last segment is the file name, to which `.<ext>` is
 *   always appended (a trailing `.{ext}` in the template is accepted and not doubled).
 * - `{field}` inserts a tag; fields (case-insensitive): artist, albumartist, album, title,
 *   track, disc, year, genre, ext, artistsort, albumartistsort. `{track:02}` pads a number field with zeros to 2 digits.
 * - `(...)` is a group: rendered with its parentheses when at least one field inside has a
 *   value, removed entirely, along with the blanks just before it, when all its fields are
 *   missing. So `{album} ({year})` gives `Album (1999)`, or `Album` without a year. A group
 *   without any field is plain text.
 *
 * Missing tags, outside a group, show their fallback: albumartist -> artist ->
 * `Unknown Artist`; artist -> albumartist -> `Unknown Artist`; `Unknown Album`;
 * artistsort -> artist; albumartistsort -> albumartist (or, without one, artistsort -> artist);
 * title -> source file name; `Unknown Genre`; `Unknown Year`. `track` and `disc` have no
 * fallback: a missing one shows nothing and also drops the text right after it, up to the
 * next field or group (`{track:02} - {title}` gives `Title` without a track number). Inside a
 * group every missing field behaves that way. A directory segment that comes out empty is left
 * out; an empty file name becomes the title.
 *
 * `{disc}` is the disc number only when the album has more than one disc and the track has a
 * track number (SPEC's `D-` prefix); so the default template gives `01 - Title` on a
 * single-disc album, `2-01 - Title` on a multi-disc one, and `Title` without a track number.
 *
 * @module
 */
import type { TrackRecord } from "../library/types.ts";
import {
  albumArtistName,
  albumName,
  artistName,
  discPrefix,
  fitName,
  genreName,
  type NamePart,
  positive,
  present,
  sanitizeName,
  titleName,
  UNKNOWN_YEAR,
} from "./naming.ts";

/** Fields a template may use. */
export const LAYOUT_FIELDS = [
  "artist",
  "albumartist",
  "album",
  "title",
  "track",
  "disc",
  "year",
  "genre",
  "ext",
  "artistsort",
  "albumartistsort",
] as const;

/** One field name of {@link LAYOUT_FIELDS}. */
export type LayoutField = typeof LAYOUT_FIELDS[number];

/** The /Artists layout of SPEC.md section 2. */
export const DEFAULT_LAYOUT = "{albumartist}/{album} ({year})/{disc}-{track:02} - {title}";

const NUMERIC: ReadonlySet<LayoutField> = new Set(["track", "disc", "year"]);

/** A template that cannot be parsed; the message names the offending part. */
export class LayoutError extends Error {
  /** The template as given. */
  readonly template: string;
  /**
   * `message` says what is wrong and where.
   * @param template the template as given
   */
  constructor(message: string, template: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LayoutError";
    this.template = template;
  }
}

/** A piece of a parsed template. */
export type LayoutPart =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "field"; readonly field: LayoutField; readonly pad: number }
  | { readonly kind: "group"; readonly parts: readonly LayoutPart[] };

/** A parsed template: one part list per path segment, the last being the file name. */
export interface Layout {
  /** The template text as given to {@link parseLayout}. */
  readonly template: string;
  /** Path segments, directories first; each renders to one sanitised name. */
  readonly segments: readonly (readonly LayoutPart[])[];
}

/** Parse a `--layout` template; throws {@link LayoutError} naming what is wrong. */
export function parseLayout(template: string): Layout {
  const fail = (msg: string): never => {
    throw new LayoutError(msg, template);
  };
  if (template.trim() === "") fail("Empty layout template");
  const raw = template.split("/");
  const segments: LayoutPart[][] = [];
  for (const seg of raw) {
    if (seg.trim() === "") fail(`Empty path segment in layout: ${template}`);
    segments.push(parseSegment(seg, template, fail));
  }
  const last = segments[segments.length - 1];
  // `.{ext}` at the end would double the extension that is always appended.
  const n = last.length;
  if (
    n >= 2 && last[n - 1].kind === "field" && (last[n - 1] as { field: string }).field === "ext"
  ) {
    const before = last[n - 2];
    if (before.kind === "text" && before.text.endsWith(".")) {
      last.length = n - 2;
      if (before.text.length > 1) last.push({ kind: "text", text: before.text.slice(0, -1) });
    }
  }
  if (!hasField(last)) fail(`The file name part of the layout uses no field: ${template}`);
  return { template, segments };
}

function parseSegment(
  seg: string,
  template: string,
  fail: (msg: string) => never,
): LayoutPart[] {
  let i = 0;
  const parse = (inGroup: boolean): LayoutPart[] => {
    const parts: LayoutPart[] = [];
    let text = "";
    const flush = () => {
      if (text !== "") parts.push({ kind: "text", text });
      text = "";
    };
    while (i < seg.length) {
      const c = seg[i];
      if (c === "{") {
        const end = seg.indexOf("}", i);
        if (end < 0) fail(`Unclosed { in layout: ${template}`);
        flush();
        parts.push(parseField(seg.slice(i + 1, end), fail));
        i = end + 1;
      } else if (c === "}") {
        fail(`Unmatched } in layout: ${template}`);
      } else if (c === "(") {
        i++;
        const inner = parse(true);
        if (seg[i] !== ")") fail(`Unclosed ( in layout (groups end within a segment): ${template}`);
        i++;
        if (hasField(inner)) {
          flush();
          parts.push({ kind: "group", parts: inner });
        } else {
          // No field inside: plain text, parentheses and all.
          text += `(${inner.map((p) => (p as { text: string }).text).join("")})`;
        }
      } else if (c === ")") {
        if (inGroup) break;
        fail(`Unmatched ) in layout: ${template}`);
      } else {
        text += c;
        i++;
      }
    }
    flush();
    return parts;
  };
  return parse(false);
}

function parseField(spec: string, fail: (msg: string) => never): LayoutPart {
  const colon = spec.indexOf(":");
  const name = (colon < 0 ? spec : spec.slice(0, colon)).trim().toLowerCase();
  if (!(LAYOUT_FIELDS as readonly string[]).includes(name)) {
    fail(`Unknown layout field: {${spec}} (known: ${LAYOUT_FIELDS.join(", ")})`);
  }
  const field = name as LayoutField;
  let pad = 0;
  if (colon >= 0) {
    const fmt = spec.slice(colon + 1).trim();
    const m = /^0([1-9])$/.exec(fmt);
    if (!m) {
      fail(`Bad format in layout field: {${spec}} (use a zero-padding width like {track:02})`);
    }
    if (!NUMERIC.has(field)) {
      fail(`Zero padding needs a number field: {${spec}} (track, disc, year)`);
    }
    pad = Number(m![1]);
  }
  return { kind: "field", field, pad };
}

function hasField(parts: readonly LayoutPart[]): boolean {
  return parts.some((p) => p.kind === "field" || (p.kind === "group" && hasField(p.parts)));
}

/** The tags a layout renders: a track record, or anything shaped like one. */
export type LayoutTrack = Pick<
  TrackRecord,
  | "artist"
  | "albumArtist"
  | "album"
  | "title"
  | "track"
  | "disc"
  | "year"
  | "genre"
  | "relPath"
  | "ext"
  | "artistSort"
  | "albumArtistSort"
>;

/** The field's own value, or undefined when the tag is missing. */
function value(f: LayoutField, t: LayoutTrack, multiDisc: boolean): string | number | undefined {
  switch (f) {
    case "artist":
      return present(t.artist);
    case "albumartist":
      return present(t.albumArtist) ?? present(t.artist);
    case "album":
      return present(t.album);
    case "title":
      return present(t.title);
    case "track":
      return positive(t.track);
    case "disc":
      return discPrefix(t, multiDisc);
    case "year":
      return positive(t.year);
    case "genre":
      return present(t.genre);
    case "ext":
      return t.ext;
    case "artistsort":
      return present(t.artistSort);
    case "albumartistsort":
      return present(t.albumArtistSort) ?? present(t.albumArtist) ?? present(t.artistSort);
  }
}

/** Fields whose text may be shortened to fit 255 bytes (numbers and the extension may not). */
const VARIABLE: ReadonlySet<LayoutField> = new Set([
  "artist",
  "albumartist",
  "album",
  "title",
  "genre",
  "artistsort",
  "albumartistsort",
]);

/** What a missing field shows outside a group; `""` means nothing (and drops the next text). */
function fallback(f: LayoutField, t: LayoutTrack): string {
  switch (f) {
    case "artist":
      return artistName(t);
    case "albumartist":
      return albumArtistName(t);
    case "album":
      return albumName(t);
    case "title":
      return titleName(t);
    case "genre":
      return genreName(t);
    case "year":
      return UNKNOWN_YEAR;
    case "artistsort":
      return artistName(t);
    case "albumartistsort":
      return albumArtistName(t);
    default:
      return "";
  }
}

function allMissing(parts: readonly LayoutPart[], t: LayoutTrack, multiDisc: boolean): boolean {
  for (const p of parts) {
    if (p.kind === "field" && value(p.field, t, multiDisc) !== undefined) return false;
    if (p.kind === "group" && !allMissing(p.parts, t, multiDisc)) return false;
  }
  return true;
}

function render(
  parts: readonly LayoutPart[],
  t: LayoutTrack,
  multiDisc: boolean,
  inGroup: boolean,
  out: NamePart[],
): void {
  let drop = false;
  for (const p of parts) {
    if (p.kind === "text") {
      if (!drop) out.push({ text: p.text, fixed: true });
      drop = false;
    } else if (p.kind === "field") {
      const v = value(p.field, t, multiDisc);
      if (v !== undefined) {
        const text = p.pad ? String(v).padStart(p.pad, "0") : String(v);
        out.push({ text, fixed: !VARIABLE.has(p.field) });
        drop = false;
      } else {
        const fb = inGroup ? "" : fallback(p.field, t);
        if (fb !== "") out.push({ text: fb, fixed: !VARIABLE.has(p.field) });
        drop = fb === "";
      }
    } else {
      drop = false;
      if (allMissing(p.parts, t, multiDisc)) trimEnd(out);
      else {
        out.push({ text: "(", fixed: true });
        render(p.parts, t, multiDisc, true, out);
        out.push({ text: ")", fixed: true });
      }
    }
  }
}

/** Drop the blanks at the end of a part list (before a group left out). */
function trimEnd(out: NamePart[]): void {
  while (out.length) {
    const last = out[out.length - 1];
    const text = last.text.trimEnd();
    if (text !== "") {
      out[out.length - 1] = { text, fixed: last.fixed };
      return;
    }
    out.pop();
  }
}

function textOf(parts: readonly NamePart[]): string {
  let s = "";
  for (const p of parts) s += p.text;
  return s;
}

/**
 * The /Artists path of a track under `layout`: sanitised directory names, then the sanitised
 * file name with its extension. `multiDisc` says whether the track's album has more than one
 * disc (see {@link discPrefix}).
 */
export function renderLayout(layout: Layout, t: LayoutTrack, multiDisc: boolean): string[] {
  const out: string[] = [];
  const last = layout.segments.length - 1;
  for (let i = 0; i < last; i++) {
    const parts: NamePart[] = [];
    render(layout.segments[i], t, multiDisc, false, parts);
    if (textOf(parts).trim() !== "") out.push(fitName(parts));
  }
  const parts: NamePart[] = [];
  render(layout.segments[last], t, multiDisc, false, parts);
  if (textOf(parts).trim() === "") out.push(sanitizeName(titleName(t), t.ext));
  else out.push(fitName(parts, t.ext));
  return out;
}
