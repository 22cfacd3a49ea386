/**
 * Container checks music-metadata does not make, so that broken files land in problems instead of
 * in the tree. With `duration: false` music-metadata stops after the tags and the first audio
 * header, so:
 * - random bytes named `.mp3` "parse" (its MPEG parser hunts for any frame sync): we require a
 *   chain of consecutive valid frame headers;
 * - a file cut short after its tags parses fine: we check the end of the stream where the format
 *   makes that cheap and exact (declared RIFF/FORM size, the last Ogg page, the CRC-16 of the last
 *   FLAC frame, the byte count of an MP3 Xing/Info header, the last MPEG/ADTS frame (MP3, MP2,
 *   AAC), the ASF data object size (WMA), the last WavPack block and its sample count).
 * Every check reads at most a head and a tail block (already cached for the tag parser) and is
 * conservative: when a file does not follow the layout a check expects, it passes.
 */
import type { BlockReader } from "./block_reader.ts";

const ascii = (b: Uint8Array, at: number, s: string) => {
  for (let i = 0; i < s.length; i++) if (b[at + i] !== s.charCodeAt(i)) return false;
  return true;
};

/** End of the ID3v2 tags (there may be several) starting at `pos`. */
function skipId3v2(r: BlockReader, pos: number): number {
  for (;;) {
    const h = r.read(pos, pos + 10);
    if (h.length < 10 || !ascii(h, 0, "ID3")) return pos;
    const size = (h[6] & 0x7f) << 21 | (h[7] & 0x7f) << 14 | (h[8] & 0x7f) << 7 | (h[9] & 0x7f);
    pos += 10 + size + (h[5] & 0x10 ? 10 : 0);
  }
}

/**
 * End of the audio data: before a trailing ID3v1 tag, Lyrics3v2 block and APE tag. `undefined`
 * when the trailer cannot be measured (so tail checks are skipped).
 */
function audioEnd(r: BlockReader): number | undefined {
  let end = r.size;
  if (end >= 128 && ascii(r.read(end - 128, end - 125), 0, "TAG")) end -= 128;
  if (end >= 15) {
    const l = r.read(end - 15, end);
    if (ascii(l, 6, "LYRICS200")) {
      const n = Number(new TextDecoder().decode(l.subarray(0, 6)));
      if (!Number.isInteger(n)) return undefined;
      end -= n + 15;
    }
  }
  if (end >= 32) {
    const f = r.read(end - 32, end);
    if (ascii(f, 0, "APETAGEX")) {
      const v = new DataView(f.buffer, f.byteOffset, 32);
      const size = v.getUint32(12, true);
      const hasHeader = (v.getUint32(20, true) & 0x80000000) !== 0;
      end -= size + (hasHeader ? 32 : 0);
    }
  }
  return end >= 0 ? end : undefined;
}

const MPEG_BITRATES: Record<string, number[]> = {
  "1-1": [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  "1-2": [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  "1-3": [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  "2-1": [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  "2-2": [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  "2-3": [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};
const MPEG_RATES = [[11025, 12000, 8000], [], [22050, 24000, 16000], [44100, 48000, 32000]];

interface FrameHeader {
  len: number;
  /** Fields that stay the same across the frames of one stream. */
  key: number;
  /** Offset of a Xing/Info header inside the frame (MPEG layer III only). */
  xingAt?: number;
}

/** An MPEG audio or ADTS frame header at `b[i]`, or `undefined`. */
function frameHeader(b: Uint8Array, i: number): FrameHeader | undefined {
  if (i + 7 > b.length || b[i] !== 0xff || (b[i + 1] & 0xe0) !== 0xe0) return undefined;
  const b1 = b[i + 1], b2 = b[i + 2];
  if ((b1 & 0xf6) === 0xf0) {
    // ADTS (AAC): sync 0xFFF, layer 00.
    if (((b2 >> 2) & 0xf) > 12) return undefined;
    const len = ((b[i + 3] & 3) << 11) | (b[i + 4] << 3) | (b[i + 5] >> 5);
    return len >= 7 ? { len, key: (b1 << 8 | (b2 & 0xfc)) | 0x10000 } : undefined;
  }
  const version = (b1 >> 3) & 3, layer = 4 - ((b1 >> 1) & 3);
  const bri = b2 >> 4, sri = (b2 >> 2) & 3, pad = (b2 >> 1) & 1;
  if (version === 1 || layer === 4 || bri === 0 || bri === 15 || sri === 3) return undefined;
  const br = MPEG_BITRATES[`${version === 3 ? 1 : 2}-${layer}`][bri] * 1000;
  const sr = MPEG_RATES[version][sri];
  let len: number;
  if (layer === 1) len = (Math.floor(12 * br / sr) + pad) * 4;
  else if (layer === 3 && version !== 3) len = Math.floor(72 * br / sr) + pad;
  else len = Math.floor(144 * br / sr) + pad;
  const mono = (b[i + 3] >> 6) === 3;
  const xingAt = layer === 3 ? 4 + (version === 3 ? (mono ? 17 : 32) : (mono ? 9 : 17)) : undefined;
  return { len, key: b1 << 8 | (b2 & 0x0c), xingAt };
}

function checkMpeg(r: BlockReader): string | undefined {
  const start = skipId3v2(r, 0);
  const end = audioEnd(r) ?? r.size;
  if (start >= end) return "truncated: no audio after the ID3v2 tag";
  // Frames are small (<= ~2.9 KB) and the first one normally follows the tag at once; allow for
  // junk or padding before it.
  const head = r.read(start, Math.min(end, start + 64 * 1024 + 8192));
  const limit = Math.min(head.length, 64 * 1024);
  for (let p = 0; p < limit; p++) {
    const first = frameHeader(head, p);
    if (!first) continue;
    let q = p + first.len, frames = 1, ok = false;
    for (;;) {
      if (start + q === end) {
        ok = true;
        break;
      }
      const h = q + 7 <= head.length ? frameHeader(head, q) : undefined;
      if (!h || h.key !== first.key) break;
      q += h.len;
      if (++frames >= 3) {
        ok = true;
        break;
      }
    }
    if (!ok) continue;
    return checkXing(head, p, first, end - start - p) ??
      checkMpegTail(r, start, end, first.key, first.len);
  }
  return "not an MPEG audio stream: no run of valid frame headers";
}

/** A Xing/Info header states the stream's byte count: compare it with what the file holds. */
function checkXing(b: Uint8Array, p: number, h: FrameHeader, have: number): string | undefined {
  if (h.xingAt === undefined) return undefined;
  const x = p + h.xingAt;
  if (x + 16 > b.length || !(ascii(b, x, "Xing") || ascii(b, x, "Info"))) return undefined;
  const v = new DataView(b.buffer, b.byteOffset + x);
  const flags = v.getUint32(4);
  if (!(flags & 2)) return undefined;
  const bytes = v.getUint32(flags & 1 ? 12 : 8);
  // Some taggers and encoders are off by a frame or so; a cut file is off by much more.
  if (bytes > 0 && have + h.len < bytes) {
    return `truncated: the MP3 header declares ${bytes} bytes of audio, the file has ${have}`;
  }
  return undefined;
}

/**
 * The last frame of an MPEG audio or ADTS stream must be whole: sync on a run of three frames
 * near the end and follow it. A run that ends exactly at the end of the audio is whole; one whose
 * last frame runs past it was cut; one broken by junk (trailing garbage some rippers leave)
 * passes, as nothing certain can be said.
 */
function checkMpegTail(r: BlockReader, start: number, end: number, key: number, len: number) {
  // Room for six frames of the size seen at the start (VBR frames may be larger: then fewer
  // fit, and with fewer than three in sync nothing is judged).
  const from = Math.max(start, end - Math.min(8192, 6 * len + 64));
  const b = r.read(from, end);
  for (let p = 0; p + 7 <= b.length; p++) {
    const first = frameHeader(b, p);
    if (!first || first.key !== key) continue;
    let q = p, frames = 0;
    for (;;) {
      if (q === b.length) return undefined;
      // A header cut in half, or a frame longer than what is left: cut, once in sync.
      if (q + 7 > b.length) {
        if (frames >= 3) return `truncated: the last audio frame is incomplete`;
        break;
      }
      const h = frameHeader(b, q);
      if (!h || h.key !== key) {
        if (frames >= 3) return undefined;
        break;
      }
      if (q + h.len > b.length) {
        if (frames >= 3) {
          return `truncated: the last audio frame needs ${h.len} bytes, ${b.length - q} are left`;
        }
        break;
      }
      q += h.len;
      frames++;
    }
  }
  return undefined;
}

const ASF_HEADER = [0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11];
const ASF_DATA = [0x36, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11];

/** An ASF (WMA) file holds its whole data object, whose size its header declares. */
function checkAsf(r: BlockReader): string | undefined {
  const h = r.read(0, 30);
  if (h.length < 30 || ASF_HEADER.some((v, i) => h[i] !== v)) return undefined;
  const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.length);
  const headerSize = Number(dv(h).getBigUint64(16, true));
  const d = r.read(headerSize, headerSize + 24);
  if (d.length < 24) return "truncated: no ASF data object after the header";
  if (ASF_DATA.some((v, i) => d[i] !== v)) return undefined;
  const dataSize = Number(dv(d).getBigUint64(16, true));
  // 0 (and too small) are written by live encoders that never knew the size.
  if (dataSize >= 50 && headerSize + dataSize > r.size) {
    return `truncated: the ASF data object declares ${dataSize} bytes, the file has ${
      r.size - headerSize
    }`;
  }
  return undefined;
}

/**
 * A WavPack file ends with a whole block (each starts `wvpk` with its size) and the blocks cover
 * the sample count the first one declares.
 */
function checkWavPack(r: BlockReader): string | undefined {
  const h = r.read(0, 32);
  if (h.length < 32 || !ascii(h, 0, "wvpk")) return undefined;
  const le = (b: Uint8Array, at: number) =>
    new DataView(b.buffer, b.byteOffset).getUint32(at, true);
  const total = le(h, 12);
  const end = audioEnd(r);
  if (end === undefined) return undefined;
  const from = Math.max(0, end - 256 * 1024);
  const b = r.read(from, end);
  for (let i = b.length - 32; i >= 0; i--) {
    if (b[i] !== 0x77 || !ascii(b, i, "wvpk")) continue;
    const blockEnd = i + 8 + le(b, i + 4);
    if (blockEnd > b.length) return "truncated: the last WavPack block is incomplete";
    if (blockEnd < b.length) return undefined;
    const last = le(b, i + 16) + le(b, i + 20);
    if (total !== 0xffffffff && last < total) {
      return `truncated: the WavPack stream ends at sample ${last} of ${total}`;
    }
    return undefined;
  }
  return undefined;
}

function checkRiffLike(r: BlockReader, littleEndian: boolean): string | undefined {
  const h = r.read(0, 12);
  if (h.length < 12) return "truncated: incomplete header";
  const declared = new DataView(h.buffer, h.byteOffset, 12).getUint32(4, littleEndian);
  // 0 and 0xFFFFFFFF are written by streaming encoders that never went back to fill it in.
  if (declared === 0 || declared === 0xffffffff) return undefined;
  if (declared + 8 > r.size + 1) {
    return `truncated: the header declares ${declared + 8} bytes, the file has ${r.size}`;
  }
  return undefined;
}

function checkOgg(r: BlockReader): string | undefined {
  const end = audioEnd(r);
  if (end === undefined) return undefined;
  // An Ogg page is at most 65,307 bytes, so the last page starts inside this window.
  const from = Math.max(0, end - 65_307 - 27);
  const b = r.read(from, end);
  for (let i = b.length - 27; i >= 0; i--) {
    if (b[i] !== 0x4f || !ascii(b, i, "OggS") || b[i + 4] !== 0) continue;
    const nseg = b[i + 26];
    if (i + 27 + nseg > b.length) continue;
    let len = 27 + nseg;
    for (let s = 0; s < nseg; s++) len += b[i + 27 + s];
    if (i + len === b.length) return undefined;
  }
  return "truncated: the last Ogg page is incomplete";
}

const CRC8 = new Uint8Array(256);
const CRC16 = new Uint16Array(256);
for (let n = 0; n < 256; n++) {
  let c8 = n, c16 = n << 8;
  for (let k = 0; k < 8; k++) {
    c8 = (c8 & 0x80 ? (c8 << 1) ^ 0x07 : c8 << 1) & 0xff;
    c16 = (c16 & 0x8000 ? (c16 << 1) ^ 0x8005 : c16 << 1) & 0xffff;
  }
  CRC8[n] = c8;
  CRC16[n] = c16;
}

interface FlacFrame {
  /** Header length, CRC-8 included. */
  len: number;
  /** Frame number (fixed block size) or first sample number (variable). */
  number: number;
  variable: boolean;
  /** Samples in the frame. */
  blockSize: number;
}

/** The FLAC frame header at `b[i]` if its CRC-8 is right. */
function flacFrameHeader(b: Uint8Array, i: number): FlacFrame | undefined {
  if (b[i] !== 0xff || (b[i + 1] & 0xfe) !== 0xf8 || i + 6 > b.length) return undefined;
  const bs = b[i + 2] >> 4, sr = b[i + 2] & 0xf;
  if (bs === 0 || sr === 15 || (b[i + 3] >> 4) > 10 || (b[i + 3] & 1)) return undefined;
  let n = i + 4;
  // UTF-8-like coded frame/sample number: 1 to 7 bytes.
  const lead = b[n];
  let extra = 0;
  if (lead >= 0xfe) extra = 6;
  else if (lead >= 0xfc) extra = 5;
  else if (lead >= 0xf8) extra = 4;
  else if (lead >= 0xf0) extra = 3;
  else if (lead >= 0xe0) extra = 2;
  else if (lead >= 0xc0) extra = 1;
  else if (lead >= 0x80) return undefined;
  if (n + 1 + extra > b.length) return undefined;
  let number = extra === 0 ? lead : lead & (0x3f >> extra);
  for (let k = 1; k <= extra; k++) {
    if ((b[n + k] & 0xc0) !== 0x80) return undefined;
    number = number * 64 + (b[n + k] & 0x3f);
  }
  n += 1 + extra;
  let blockSize: number;
  if (bs === 1) blockSize = 192;
  else if (bs <= 5) blockSize = 576 << (bs - 2);
  else if (bs === 6) blockSize = b[n++] + 1;
  else if (bs === 7) {
    blockSize = (b[n] << 8 | b[n + 1]) + 1;
    n += 2;
  } else blockSize = 256 << (bs - 8);
  if (sr === 12) n += 1;
  else if (sr === 13 || sr === 14) n += 2;
  if (n >= b.length) return undefined;
  let crc = 0;
  for (let k = i; k < n; k++) crc = CRC8[crc ^ b[k]];
  if (crc !== b[n]) return undefined;
  return { len: n + 1 - i, number, variable: (b[i + 1] & 1) === 1, blockSize };
}

function checkFlac(r: BlockReader): string | undefined {
  let pos = skipId3v2(r, 0);
  if (!ascii(r.read(pos, pos + 4), 0, "fLaC")) return undefined;
  pos += 4;
  let maxFrame = 0, maxBlock = 0, totalSamples = 0;
  for (;;) {
    const h = r.read(pos, pos + 4);
    if (h.length < 4) return "truncated inside the FLAC metadata";
    const len = h[1] << 16 | h[2] << 8 | h[3];
    if ((h[0] & 0x7f) === 0) {
      const si = r.read(pos + 4, pos + 22);
      if (si.length === 18) {
        maxBlock = si[2] << 8 | si[3];
        maxFrame = si[7] << 16 | si[8] << 8 | si[9];
        totalSamples = (si[13] & 0x0f) * 2 ** 32 + (si[14] << 24 >>> 0) +
          (si[15] << 16 | si[16] << 8 | si[17]);
      }
    }
    pos += 4 + len;
    if (h[0] & 0x80) break;
  }
  const end = audioEnd(r);
  if (end === undefined) return undefined;
  if (pos >= end) return "truncated: no FLAC audio frames";
  const first = r.read(pos, pos + 2);
  if (first[0] !== 0xff || (first[1] & 0xfe) !== 0xf8) {
    return "no FLAC audio frame after the metadata";
  }
  const window = Math.min(1 << 20, Math.max(64 * 1024, maxFrame + 64));
  const from = Math.max(pos, end - window);
  const b = r.read(from, end);
  if (b.length < 2) return "truncated: no FLAC audio frames";
  const want = b[b.length - 2] << 8 | b[b.length - 1];
  let headers = 0;
  for (let i = b.length - 2; i >= 0; i--) {
    if (b[i] !== 0xff) continue;
    const f = flacFrameHeader(b, i);
    if (!f) continue;
    headers++;
    let crc = 0;
    for (let k = i; k < b.length - 2; k++) crc = ((crc << 8) & 0xffff) ^ CRC16[(crc >> 8) ^ b[k]];
    if (crc !== want) continue;
    // The file ends on a whole frame; a cut exactly between frames shows in the sample count.
    const last = (f.variable ? f.number : f.number * maxBlock) + f.blockSize;
    if (totalSamples > 0 && maxBlock > 0 && last < totalSamples) {
      return `truncated: the FLAC stream ends at sample ${last} of ${totalSamples}`;
    }
    return undefined;
  }
  // Frames larger than the window (no size in STREAMINFO): nothing to judge by.
  if (headers === 0 && from > pos) return undefined;
  return "truncated: the last FLAC frame is incomplete";
}

/**
 * Why the file behind `r` is not a complete stream of the container music-metadata detected
 * (`container` as in `format.container`), or `undefined` when it looks whole.
 */
export function checkContainer(r: BlockReader, container: string | undefined): string | undefined {
  const c = (container ?? "").toLowerCase();
  if (c === "mpeg" || c.startsWith("adts")) return checkMpeg(r);
  if (c === "flac") return checkFlac(r);
  if (c === "wave") return checkRiffLike(r, true);
  if (c.startsWith("aiff")) return checkRiffLike(r, false);
  if (c === "ogg") return checkOgg(r);
  if (c.startsWith("asf")) return checkAsf(r);
  if (c === "wavpack") return checkWavPack(r);
  return undefined;
}
