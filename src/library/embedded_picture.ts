/**
 * Where a file's embedded front picture lies: its MIME type and its exact byte range in the
 * source file, for ID3v2 APIC frames (MP3, MP2, AAC, and the `id3 ` chunk of WAV and AIFF), FLAC
 * PICTURE blocks and MP4 `covr` items.
 *
 * Why hand-written: music-metadata only hands pictures over as copied byte arrays (reading the
 * whole picture into memory, which the scan skips on purpose with `skipCovers`), and never says
 * where they are. The tree serves an embedded cover as `cover.<ext>` with exactly the embedded
 * bytes, read lazily by range from the source, so the location is what matters. The walks below
 * read only frame, block and atom headers through the scan's {@link BlockReader}, whose head
 * block the tag parser has already read. Pictures stored in ways that are not a plain byte range
 * (ID3v2 unsynchronisation or compression, base64 in Vorbis comments) are not located.
 */
import { BlockReader } from "./block_reader.ts";

/** An embedded picture: its type and where its bytes are in the source file. */
export interface EmbeddedPicture {
  /** MIME type as tagged (`image/jpeg`, `image/png`...), lower case. */
  mime: string;
  /** Offset of the first picture byte in the file. */
  offset: number;
  /** Number of picture bytes. */
  size: number;
}

const ascii = (b: Uint8Array, at: number, s: string) => {
  for (let i = 0; i < s.length; i++) if (b[at + i] !== s.charCodeAt(i)) return false;
  return true;
};

const latin1 = (b: Uint8Array) => String.fromCharCode(...b);

/** ID3v1 picture type 3 is the front cover; any other picture is taken only when there is none. */
const FRONT = 3;

function mimeOf(raw: string): string {
  const m = raw.trim().toLowerCase();
  // ID3v2.2-style and careless taggers write just the format.
  if (m === "jpg" || m === "jpeg") return "image/jpeg";
  if (m === "png") return "image/png";
  return m.includes("/") ? m : `image/${m || "jpeg"}`;
}

function syncsafe(b: Uint8Array, at: number): number {
  return (b[at] & 0x7f) << 21 | (b[at + 1] & 0x7f) << 14 | (b[at + 2] & 0x7f) << 7 |
    (b[at + 3] & 0x7f);
}

function be32(b: Uint8Array, at: number): number {
  return (b[at] << 24 >>> 0) + (b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]);
}

/** Pick the front cover, else the first picture. */
class Best {
  pic: EmbeddedPicture | undefined;
  front = false;
  /** Offer a picture; true when it is a front cover (nothing better can come). */
  offer(p: EmbeddedPicture, type: number): boolean {
    if (p.size <= 0) return false;
    if (type === FRONT && !this.front) {
      this.pic = p;
      this.front = true;
    } else if (!this.pic) this.pic = p;
    return this.front;
  }
}

function id3v2Picture(r: BlockReader, best: Best, base = 0): number {
  const h = r.read(base, base + 10);
  if (h.length < 10 || !ascii(h, 0, "ID3")) return base;
  const version = h[3];
  const end = base + 10 + syncsafe(h, 6);
  if (version < 3 || version > 4 || (h[5] & 0x80)) return end; // v2.2 or unsynchronised
  // Frame headers are walked in one read of the tag, but for its picture data: a large
  // picture stays unread (only the first KiB of an APIC frame is needed).
  let pos = base + 10;
  if (h[5] & 0x40) {
    const x = r.read(base + 10, base + 14);
    pos += version === 4 ? syncsafe(x, 0) : be32(x, 0) + 4;
  }
  let tag = r.read(base, Math.min(end, base + 64 * 1024));
  while (pos + 10 <= end) {
    if (pos + 10 > base + tag.length) tag = r.read(base, Math.min(end, pos + 64 * 1024));
    const f = tag.subarray(pos - base, pos - base + 10);
    if (f[0] === 0) break; // padding
    const size = version === 4 ? syncsafe(f, 4) : be32(f, 4);
    const body = pos + 10;
    pos = body + size;
    if (f[0] !== 0x41 || !ascii(f, 0, "APIC") || pos > end) continue;
    let start = body;
    if (version === 4) {
      if (f[9] & 0x0e) continue; // compressed, encrypted or unsynchronised
      if (f[9] & 0x01) start += 4; // data length indicator
      if (f[9] & 0x40) start += 1; // group id
    } else {
      if (f[9] & 0xc0) continue; // compressed or encrypted
      if (f[9] & 0x20) start += 1; // group id
    }
    const head = r.read(start, Math.min(pos, start + 1024));
    const enc = head[0];
    let i = 1;
    while (i < head.length && head[i] !== 0) i++;
    const mime = mimeOf(latin1(head.subarray(1, i)));
    const type = head[i + 1];
    i += 2;
    // The description ends with one NUL (latin1, UTF-8) or two aligned ones (UTF-16).
    if (enc === 1 || enc === 2) {
      while (i + 1 < head.length && (head[i] !== 0 || head[i + 1] !== 0)) i += 2;
      i += 2;
    } else {
      while (i < head.length && head[i] !== 0) i++;
      i += 1;
    }
    if (i > head.length) continue;
    if (best.offer({ mime, offset: start + i, size: pos - start - i }, type)) break;
  }
  return end;
}

/** The ID3v2 tag in the `id3 ` chunk of a RIFF (WAV, little-endian) or FORM (AIFF) file. */
function chunkPicture(r: BlockReader, littleEndian: boolean, best: Best): void {
  let pos = 12;
  for (let n = 0; pos + 8 <= r.size && n < 1000; n++) {
    const h = r.read(pos, pos + 8);
    const size = new DataView(h.buffer, h.byteOffset, 8).getUint32(4, littleEndian);
    const id = latin1(h.subarray(0, 4)).toLowerCase();
    if (id === "id3 ") {
      id3v2Picture(r, best, pos + 8);
      return;
    }
    pos += 8 + size + (size & 1);
  }
}

function flacPicture(r: BlockReader, at: number, best: Best): void {
  if (!ascii(r.read(at, at + 4), 0, "fLaC")) return;
  let pos = at + 4;
  for (let n = 0; n < 1000; n++) {
    const h = r.read(pos, pos + 4);
    if (h.length < 4) return;
    const len = h[1] << 16 | h[2] << 8 | h[3];
    if ((h[0] & 0x7f) === 6) {
      const p = r.read(pos + 4, pos + 4 + Math.min(len, 1024));
      const type = be32(p, 0);
      const mimeLen = be32(p, 4);
      const descAt = 8 + mimeLen;
      const descLen = be32(p, descAt);
      const dataLenAt = descAt + 4 + descLen + 16;
      if (dataLenAt + 4 <= p.length) {
        const size = be32(p, dataLenAt);
        const offset = pos + 4 + dataLenAt + 4;
        if (offset + size <= pos + 4 + len) {
          const mime = mimeOf(latin1(p.subarray(8, descAt)));
          if (best.offer({ mime, offset, size }, type)) return;
        }
      }
    }
    pos += 4 + len;
    if (h[0] & 0x80) return;
  }
}

/** The boxes of `[from, to)`: calls `fn(type, start, headerLen, end)`; stops when it returns true. */
function boxes(
  r: BlockReader,
  from: number,
  to: number,
  fn: (type: string, start: number, header: number, end: number) => boolean | void,
): void {
  let pos = from;
  for (let n = 0; pos + 8 <= to && n < 10_000; n++) {
    const h = r.read(pos, pos + 16);
    let size = be32(h, 0);
    let header = 8;
    if (size === 1) {
      size = be32(h, 8) * 2 ** 32 + be32(h, 12);
      header = 16;
    } else if (size === 0) size = to - pos;
    if (size < header) return;
    const end = Math.min(to, pos + size);
    if (fn(latin1(h.subarray(4, 8)), pos, header, end)) return;
    pos += size;
  }
}

function mp4Picture(r: BlockReader, best: Best): void {
  const path = ["moov", "udta", "meta", "ilst", "covr"];
  const descend = (depth: number, from: number, to: number) => {
    boxes(r, from, to, (type, start, header, end) => {
      if (depth < path.length) {
        if (type !== path[depth]) return;
        // meta is a full box: version and flags before its children.
        descend(depth + 1, start + header + (type === "meta" ? 4 : 0), end);
        return true;
      }
      if (type !== "data") return;
      const d = r.read(start + header, start + header + 8);
      const kind = d[3];
      const mime = kind === 14 ? "image/png" : kind === 27 ? "image/bmp" : "image/jpeg";
      // covr has no picture types: the first image is the front cover by convention.
      return best.offer(
        { mime, offset: start + header + 8, size: end - start - header - 8 },
        FRONT,
      );
    });
  };
  descend(0, 0, r.size);
}

/**
 * The embedded front-cover picture of the file behind `r` (else its first picture), or
 * `undefined`. `container` is music-metadata's `format.container`; reads headers only.
 */
export function locatePicture(
  r: BlockReader,
  container: string | undefined,
): EmbeddedPicture | undefined {
  const c = (container ?? "").toLowerCase();
  const best = new Best();
  try {
    if (c === "flac") flacPicture(r, id3v2Picture(r, new Best()), best);
    else if (c === "mpeg" || c.startsWith("adts")) id3v2Picture(r, best);
    else if (c === "wave") chunkPicture(r, true, best);
    else if (c.startsWith("aiff")) chunkPicture(r, false, best);
    else if (c.startsWith("m4a") || c.startsWith("mp4") || c.includes("isom") || c === "3gp") {
      mp4Picture(r, best);
    }
  } catch {
    // A malformed header: no picture, the tags stand.
    return undefined;
  }
  return best.pic;
}

/**
 * Where the embedded front picture of the audio file at `path` is (see {@link locatePicture}),
 * for serving it by range; `undefined` when it has none that is a plain byte range. Sniffs the
 * container from the first bytes. Synchronous reads of headers only: call it off the request
 * loop or accept a few small reads.
 */
export function embeddedPictureRange(path: string): EmbeddedPicture | undefined {
  const file = Deno.openSync(path, { read: true });
  try {
    const r = new BlockReader(file, file.statSync().size);
    return locatePicture(r, sniffContainer(r));
  } finally {
    file.close();
  }
}

/**
 * The exact bytes and MIME type of the embedded front picture of `path`, read on demand (one
 * picture in memory, never a library's worth); `undefined` when there is none.
 */
export async function readEmbeddedPicture(
  path: string,
): Promise<{ mime: string; bytes: Uint8Array } | undefined> {
  const where = embeddedPictureRange(path);
  if (!where) return undefined;
  const file = await Deno.open(path, { read: true });
  try {
    const bytes = new Uint8Array(where.size);
    await file.seek(where.offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < bytes.length) {
      const n = await file.read(bytes.subarray(got));
      if (n === null) throw new Error(`Cannot read the embedded picture of ${path}: file was cut`);
      got += n;
    }
    return { mime: where.mime, bytes };
  } finally {
    file.close();
  }
}

/** The container name music-metadata would give, for the three layouts located here. */
function sniffContainer(r: BlockReader): string | undefined {
  const h = r.read(0, 12);
  if (ascii(h, 4, "ftyp")) return "mp4";
  if (ascii(h, 0, "RIFF") && ascii(h, 8, "WAVE")) return "wave";
  if (ascii(h, 0, "FORM") && ascii(h, 8, "AIF")) return "aiff";
  let pos = 0;
  if (ascii(h, 0, "ID3")) pos = 10 + syncsafe(h, 6);
  if (ascii(r.read(pos, pos + 4), 0, "fLaC")) return "flac";
  return pos > 0 ? "mpeg" : undefined;
}
