/**
 * Tag reading: music-metadata over a synchronous, block-cached file source.
 *
 * Where the time goes (measured here, small tagged files, warm page cache): music-metadata's
 * `parseFile` manages ~620-1,070 files/s on one core, while `parseBuffer` of the same bytes
 * after one `readFileSync` manages ~12,000/s. The cost is `parseFile`'s async node-compat file
 * I/O under Deno (one awaited `FileHandle.read` per token), not the tag parsing. So there is no
 * hand-written tag parser: music-metadata reads through {@link FileBlob}, a Blob look-alike whose
 * `slice().arrayBuffer()` is served from 64 KiB blocks read with `readSync` (the head block also
 * answers the container sniffing and most tag reads). With the container checks of validate.ts
 * this reads ~7,600 files/s on one thread, and a cold scan on 2 cores ~9,200 files/s against
 * the 5,000 goal (bench/library_bench.ts prints all of these). Files of any size work: only the
 * blocks the parser touches are read, so embedded covers and audio data are skipped, and
 * trailing ID3v1/APE tags cost one tail block.
 *
 * Called from the parse workers (parse_worker.ts), never on the daemon's main thread in bulk:
 * the reads are synchronous on purpose.
 */
import { type IAudioMetadata, parseBlob } from "music-metadata";
import { BlockReader, FileBlob } from "./block_reader.ts";
import type { Tags } from "./types.ts";
import { locatePicture } from "./embedded_picture.ts";
import { cleanText } from "./text.ts";
import { checkContainer } from "./validate.ts";

/** Extensions (lower case, no dot) of the files the library treats as audio. */
export const AUDIO_EXTENSIONS: ReadonlySet<string> = new Set([
  "mp3",
  "mp2",
  "mp1",
  "m2a",
  "aac",
  "flac",
  "ogg",
  "oga",
  "opus",
  "spx",
  "m4a",
  "m4b",
  "mp4",
  "wav",
  "wave",
  "aif",
  "aiff",
  "aifc",
  "wv",
  "ape",
  "wma",
  "asf",
  "mpc",
  "dsf",
  "dff",
  "mka",
  "webm",
]);

// music-metadata picks its parser from the MIME type first; naming it from the extension (as its
// own parseFile does) skips content sniffing, and content sniffing remains the fallback.
const MIME_BY_EXT: Record<string, string> = {
  mp3: "audio/mpeg",
  mp2: "audio/mpeg",
  mp1: "audio/mpeg",
  m2a: "audio/mpeg",
  aac: "audio/aacp",
  flac: "audio/flac",
  ogg: "audio/ogg",
  oga: "audio/ogg",
  opus: "audio/ogg",
  spx: "audio/ogg",
  m4a: "audio/mp4",
  m4b: "audio/mp4",
  mp4: "audio/mp4",
  wav: "audio/wav",
  wave: "audio/wav",
  aif: "audio/aiff",
  aiff: "audio/aiff",
  aifc: "audio/aiff",
  wv: "audio/wavpack",
  ape: "audio/ape",
  wma: "audio/ms-wma",
  asf: "audio/ms-asf",
  mpc: "audio/musepack",
  dsf: "audio/dsf",
  dff: "audio/dsd",
  mka: "audio/matroska",
  webm: "audio/webm",
};

/** Lower-case extension of a file name without the dot (`""` when there is none). */
export function extensionOf(name: string): string {
  const slash = name.lastIndexOf("/");
  const dot = name.lastIndexOf(".");
  if (dot <= slash + 1) return "";
  return name.slice(dot + 1).toLowerCase();
}

/** Whether a file name has one of the {@link AUDIO_EXTENSIONS}. */
export function isAudioName(name: string): boolean {
  return AUDIO_EXTENSIONS.has(extensionOf(name));
}

/** The result of reading one file: its tags, or why it cannot be used. */
export type TagResult = { ok: true; tags: Tags } | {
  ok: false;
  reason: string;
  /**
   * The failure may go away without the file changing (it could not be opened, the parser
   * crashed or hung): check the file again at the next scan instead of remembering it as broken.
   */
  transient?: boolean;
};

const PARSE_OPTIONS = { skipCovers: true, duration: false } as const;

/** The text of an error, for a problem reason. */
function reasonOf(e: unknown): string {
  // music-metadata reading past the data it has: a cut or damaged file.
  if (e instanceof RangeError) return `corrupt or truncated (${e.message})`;
  // strtok3's: the parser wanted bytes past the end of the file.
  if (e instanceof Error && e.name === "EndOfStreamError") return "truncated: the file ends early";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.NotFound) return "file vanished while reading";
  const msg = e instanceof Error ? e.message : String(e);
  return msg.trim() || (e instanceof Error ? e.name : "unknown error");
}

function parse(reader: BlockReader, mime: string): Promise<IAudioMetadata> {
  // FileBlob has the part of Blob that music-metadata uses; the rest is never touched.
  return parseBlob(new FileBlob(reader, mime) as unknown as Blob, PARSE_OPTIONS);
}

/** One parse with a given MIME type (`""`: sniff), judged by the container checks. */
async function attempt(reader: BlockReader, mime: string): Promise<TagResult> {
  let meta: IAudioMetadata;
  try {
    meta = await parse(reader, mime);
  } catch (e) {
    return { ok: false, reason: reasonOf(e) };
  }
  if (!hasAudio(meta)) return { ok: false, reason: "no audio stream found" };
  const broken = checkContainer(reader, meta.format.container);
  if (broken) return { ok: false, reason: broken };
  const tags = normaliseTags(meta);
  const picture = locatePicture(reader, meta.format.container);
  if (picture) tags.picture = picture.mime;
  return { ok: true, tags };
}

/**
 * Read and normalise the tags of one audio file. Never throws: an unreadable or unparseable file
 * gives `{ ok: false, reason }` with a non-empty reason.
 */
export async function readTags(path: string): Promise<TagResult> {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    return { ok: false, reason: `cannot open: ${reasonOf(e)}`, transient: true };
  }
  try {
    const size = file.statSync().size;
    if (size === 0) return { ok: false, reason: "empty file" };
    const reader = new BlockReader(file, size);
    const mime = MIME_BY_EXT[extensionOf(path)] ?? "";
    const first = await attempt(reader, mime);
    if ("tags" in first || !mime) return first;
    // A mislabelled file (FLAC named .mp3...) still parses when sniffed by content.
    const sniffed = await attempt(reader, "");
    return "tags" in sniffed ? sniffed : first;
  } catch (e) {
    return { ok: false, reason: reasonOf(e) };
  } finally {
    file.close();
  }
}

/**
 * music-metadata's parsers accept nearly any bytes (the MPEG one hunts for frame syncs and may
 * report `hasAudio: true` with nothing found), so "parsed" alone does not mean "playable": require
 * a container and evidence of an audio stream.
 */
function hasAudio(meta: IAudioMetadata): boolean {
  const f = meta.format;
  if (f.hasAudio === false || !f.container) return false;
  return (f.sampleRate ?? 0) > 0 || f.codec !== undefined || (f.duration ?? 0) > 0;
}

function text(v: unknown): string | undefined {
  if (typeof v !== "string") return undefined;
  const t = cleanText(v);
  return t === "" ? undefined : t;
}

function positive(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.floor(v) : undefined;
}

function yearOf(year: unknown, date: unknown): number | undefined {
  const y = positive(year);
  if (y !== undefined && y <= 9999) return y;
  if (typeof date === "string") {
    const m = /^\s*(\d{4})/.exec(date);
    if (m) {
      const n = Number(m[1]);
      if (n > 0) return n;
    }
  }
  return undefined;
}

/** A track or disc position; `null` parts are missing from the tag. */
export interface TagPosition {
  /** The 1-based number, e.g. track 4. */
  no: number | null;
  /** The total, e.g. 12 tracks on the disc. */
  of: number | null;
}

/**
 * The fields of music-metadata's `IAudioMetadata` that {@link normaliseTags} reads. Values are
 * raw: strings may be empty or NUL-padded, numbers zero or out of range.
 */
export interface RawMetadata {
  /** Tags under music-metadata's format-independent names. */
  common: {
    artist?: string;
    artists?: string[];
    albumartist?: string;
    album?: string;
    title?: string;
    track: TagPosition;
    disk: TagPosition;
    year?: number;
    date?: string;
    originaldate?: string;
    genre?: string[];
    compilation?: boolean;
    artistsort?: string;
    albumartistsort?: string;
  };
  /**
   * Tags as the container names them, by tag type (`ID3v2.3`, `vorbis`, `APEv2`...): read for
   * what `common` leaves out (foobar2000's `TXXX:ALBUM ARTIST`).
   */
  native?: Record<string, { id: string; value: unknown }[]>;
  /** Container and stream facts; `bitrate` in bits/s, `sampleRate` in Hz, `duration` in s. */
  format: {
    container?: string;
    codec?: string;
    bitrate?: number;
    sampleRate?: number;
    duration?: number;
  };
}

/** music-metadata's result reduced to the library's {@link Tags}. */
export function normaliseTags(meta: RawMetadata): Tags {
  const c = meta.common;
  const f = meta.format;
  const tags: Tags = {};
  const set = <K extends keyof Tags>(k: K, v: Tags[K] | undefined) => {
    if (v !== undefined) tags[k] = v;
  };
  set("artist", text(c.artist) ?? text(c.artists?.[0]));
  set("albumArtist", text(c.albumartist) ?? nativeAlbumArtist(meta.native));
  set("album", text(c.album));
  set("title", text(c.title));
  set("track", positive(c.track?.no));
  set("trackTotal", positive(c.track?.of));
  set("disc", positive(c.disk?.no));
  set("discTotal", positive(c.disk?.of));
  set("year", yearOf(c.year, c.date ?? c.originaldate));
  const genres = genresOf(c.genre);
  if (genres.length > 0) {
    tags.genre = genres[0];
    tags.genres = genres;
  }
  set("artistSort", text(c.artistsort));
  set("albumArtistSort", text(c.albumartistsort));
  if (c.compilation !== undefined) tags.compilation = c.compilation === true;
  // A compilation tagged only per singer (no album artist) is one album, not one per singer.
  if (tags.albumArtist === undefined && tags.compilation) tags.albumArtist = VARIOUS_ARTISTS;
  const container = text(f.container);
  const codec = text(f.codec);
  // `Ogg/Vorbis I`, `MPEG/MPEG 1 Layer 3`... are noisy; keep the container unless it is a
  // generic wrapper whose codec is what a user means (Ogg, Matroska, MP4 families).
  set(
    "format",
    container && codec && /^(ogg|ebml|matroska|webm)/i.test(container)
      ? `${container}/${codec}`
      : container ?? codec,
  );
  set("bitrate", positive(f.bitrate));
  set("sampleRate", positive(f.sampleRate));
  if (typeof f.duration === "number" && Number.isFinite(f.duration) && f.duration > 0) {
    tags.duration = f.duration;
  }
  return tags;
}

/** The album artist of a compilation flagged as one without an album artist of its own. */
export const VARIOUS_ARTISTS = "Various Artists";

// Album-artist fields music-metadata does not map to `common.albumartist` (upper-cased ids).
const NATIVE_ALBUM_ARTIST = new Set([
  "TXXX:ALBUM ARTIST",
  "TXXX:ALBUMARTIST",
  "TXXX:ALBUM_ARTIST",
  "ALBUM ARTIST",
  "ALBUM_ARTIST",
  "WM/ALBUMARTIST",
]);

function nativeAlbumArtist(
  native: Record<string, { id: string; value: unknown }[]> | undefined,
): string | undefined {
  if (!native) return undefined;
  for (const tags of Object.values(native)) {
    for (const t of tags) {
      if (NATIVE_ALBUM_ARTIST.has(t.id.toUpperCase())) {
        const v = text(t.value);
        if (v !== undefined) return v;
      }
    }
  }
  return undefined;
}

/**
 * Every genre, in tag order: each field (several GENRE fields, ID3v2.4 NUL-separated values,
 * which music-metadata already splits) split again on `;` (`Jazz; Soul`), cleaned, and without
 * repeats that differ only in case or normalisation.
 */
function genresOf(raw: string[] | undefined): string[] {
  const out: string[] = [];
  if (!raw) return out;
  const seen = new Set<string>();
  for (const field of raw) {
    if (typeof field !== "string") continue;
    for (const part of field.split(/[;\0]/)) {
      const g = text(part);
      if (g === undefined) continue;
      const key = g.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(g);
    }
  }
  return out;
}
