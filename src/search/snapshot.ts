/**
 * The snapshot file: a fixed 72-byte header, then minisearch's JSON serialisation (format 2).
 *
 * ```
 * offset size
 *      0    8  magic "MFSEARCH"
 *      8    4  format version, u32 LE (SNAPSHOT_FORMAT_VERSION)
 *     12    4  header size, u32 LE (72)
 *     16    8  document count, u64 LE
 *     24    8  database generation the index reflects, u64 LE
 *     32    8  body size in bytes, u64 LE
 *     40   32  SHA-256 of (body ++ header bytes 0..40)
 *     72    -  body: UTF-8 JSON, loadable by MiniSearch.loadJSON with the options of engine.ts
 * ```
 * The checksum covers the header fields too, so a flipped count or generation is caught. It is
 * computed over the body first because the body is streamed before its size is known.
 */
import { createHash } from "node:crypto";
import { createEngine, type Engine, FIELD_IDS, internals, type TermData } from "./engine.ts";
import {
  SearchCommitError,
  SearchSnapshotCorruptError,
  SearchSnapshotError,
  SearchSnapshotMissingError,
  SearchSnapshotStaleError,
  SearchSnapshotVersionError,
} from "./errors.ts";

/** Bump whenever the header, the fields, or the text processing of ./text.ts change. */
export const SNAPSHOT_FORMAT_VERSION = 1;
/** Size of the fixed header. */
export const HEADER_SIZE = 72;
const MAGIC = new TextEncoder().encode("MFSEARCH");
const HASHED_HEADER = 40;
// Slices of about this many characters are serialised between two writes, so the event loop
// (FUSE requests, searches) runs every few milliseconds during a commit.
const SLICE_CHARS = 256 * 1024;
// Loading yields to the event loop after this many map entries.
const LOAD_SLICE = 20_000;

/** What a snapshot header says. */
export interface SnapshotHeader {
  /** Format version (SNAPSHOT_FORMAT_VERSION). */
  version: number;
  /** Documents in the snapshot. */
  documentCount: number;
  /** The database generation the snapshot reflects. */
  generation: number;
  /** Bytes after the header. */
  bodySize: number;
}

/** The outcome of a written snapshot. */
export interface SnapshotWrite {
  /** Documents written. */
  documentCount: number;
  /** The generation stamped. */
  generation: number;
  /** Size of the whole file. */
  bytes: number;
}

function encodeHeader(h: SnapshotHeader): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE);
  const view = new DataView(buf.buffer);
  buf.set(MAGIC, 0);
  view.setUint32(8, h.version, true);
  view.setUint32(12, HEADER_SIZE, true);
  view.setBigUint64(16, BigInt(h.documentCount), true);
  view.setBigUint64(24, BigInt(h.generation), true);
  view.setBigUint64(32, BigInt(h.bodySize), true);
  return buf;
}

/** The temp file name used for a commit; openWithRecovery removes those of dead processes. */
export function tempPath(path: string, seq: number): string {
  return `${path}.tmp-${Deno.pid}-${seq}`;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/** fsync a directory so a rename in it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  // Deno opens directories read-only and fsync(2) works on the fd (checked with strace). Some
  // filesystems refuse fsync on directories (EINVAL); they give no stronger guarantee anyway.
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotSupported) && !/os error 22\b/.test(String(e))) throw e;
  } finally {
    d.close();
  }
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/**
 * The JSON of `ms` in slices, identical in format to `JSON.stringify(ms)` except that
 * postings of discarded documents are left out (so `dirtCount` is 0). The caller must not
 * change `ms` until the generator is done.
 */
export function* serialiseBody(ms: Engine): Generator<string> {
  const m = internals(ms);
  const live = m._documentIds;
  let buf = `{"documentCount":${live.size},"nextId":${m._nextId},"documentIds":{`;
  let first = true;
  for (const [short, id] of live) {
    buf += `${first ? "" : ","}"${short}":${JSON.stringify(id)}`;
    first = false;
    if (buf.length >= SLICE_CHARS) {
      yield buf;
      buf = "";
    }
  }
  buf += `},"fieldIds":${JSON.stringify(m._fieldIds)},"fieldLength":{`;
  first = true;
  for (const [short, lengths] of m._fieldLength) {
    if (!live.has(short)) continue;
    buf += `${first ? "" : ","}"${short}":${JSON.stringify(lengths)}`;
    first = false;
    if (buf.length >= SLICE_CHARS) {
      yield buf;
      buf = "";
    }
  }
  buf += `},"averageFieldLength":${JSON.stringify(m._avgFieldLength)}` +
    `,"storedFields":{},"dirtCount":0,"index":[`;
  first = true;
  for (const [term, data] of m._index) {
    let entry = "";
    for (const [fieldId, freqs] of data) {
      let postings = "";
      for (const [short, freq] of freqs) {
        if (!live.has(short)) continue;
        postings += `${postings === "" ? "" : ","}"${short}":${freq}`;
      }
      if (postings !== "") entry += `${entry === "" ? "" : ","}"${fieldId}":{${postings}}`;
    }
    if (entry === "") continue;
    // One entry per line: still minisearch's JSON, and the loader can parse it in slices.
    buf += `${first ? "" : ","}\n[${JSON.stringify(term)},{${entry}}]`;
    first = false;
    if (buf.length >= SLICE_CHARS) {
      yield buf;
      buf = "";
    }
  }
  yield buf + `],"serializationVersion":2}`;
}

let tempSeq = 0;

/**
 * Write `ms` to `path` atomically: temp file in the same directory, fsync, rename over,
 * fsync of the directory. On failure the temp file is removed and `path` is untouched.
 */
export async function writeSnapshot(
  path: string,
  ms: Engine,
  generation: number,
): Promise<SnapshotWrite> {
  const tmp = tempPath(path, ++tempSeq);
  let file: Deno.FsFile | undefined;
  try {
    const documentCount = ms.documentCount;
    file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    await writeAll(file, new Uint8Array(HEADER_SIZE));
    const hash = createHash("sha256");
    const encoder = new TextEncoder();
    let bodySize = 0;
    for (const slice of serialiseBody(ms)) {
      const bytes = encoder.encode(slice);
      hash.update(bytes);
      await writeAll(file, bytes);
      bodySize += bytes.length;
    }
    const header = encodeHeader({
      version: SNAPSHOT_FORMAT_VERSION,
      documentCount,
      generation,
      bodySize,
    });
    hash.update(header.subarray(0, HASHED_HEADER));
    header.set(hash.digest(), HASHED_HEADER);
    await file.seek(0, Deno.SeekMode.Start);
    await writeAll(file, header);
    await file.sync();
    file.close();
    file = undefined;
    await Deno.rename(tmp, path);
    await syncDir(dirOf(path));
    return { documentCount, generation, bytes: HEADER_SIZE + bodySize };
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw new SearchCommitError(path, e instanceof Error ? e.message : String(e), { cause: e });
  }
}

/** Remove temp files of commits whose process is gone (a crash mid-commit leaves one). */
export async function removeStaleTemps(path: string): Promise<number> {
  const dir = dirOf(path);
  const prefix = path.slice(path.lastIndexOf("/") + 1) + ".tmp-";
  let removed = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.startsWith(prefix)) continue;
      const pid = Number(e.name.slice(prefix.length).split("-")[0]);
      if (pid === Deno.pid || (Number.isInteger(pid) && pid > 0 && processAlive(pid))) continue;
      await Deno.remove(`${dir}/${e.name}`).catch(() => {});
      removed++;
    }
  } catch {
    // An unreadable directory will fail the commit with a clearer error.
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** A snapshot read and verified, not yet turned into an index. */
export interface SnapshotFile {
  header: SnapshotHeader;
  /** Verified body bytes. */
  body: Uint8Array;
}

function readU64(view: DataView, off: number): number {
  const v = view.getBigUint64(off, true);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.NaN : Number(v);
}

/**
 * Read `path` and verify magic, version, size and checksum, and the generation when
 * `expectedGeneration` is given. Throws a {@link SearchSnapshotError} subclass on any problem.
 */
export async function readSnapshot(
  path: string,
  expectedGeneration?: number,
): Promise<SnapshotFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new SearchSnapshotMissingError(path, { cause: e });
    throw new SearchSnapshotCorruptError(
      "unreadable",
      path,
      `cannot read: ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
  if (bytes.length === 0) throw new SearchSnapshotCorruptError("truncated", path, "empty file");
  const magicLen = Math.min(bytes.length, MAGIC.length);
  for (let i = 0; i < magicLen; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new SearchSnapshotCorruptError("garbage", path, "not a search snapshot (bad magic)");
    }
  }
  if (bytes.length < HEADER_SIZE) {
    throw new SearchSnapshotCorruptError("truncated", path, "truncated header");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  const documentCount = readU64(view, 16);
  if (version !== SNAPSHOT_FORMAT_VERSION) {
    throw new SearchSnapshotVersionError(path, version, SNAPSHOT_FORMAT_VERSION, {
      documentCount: Number.isNaN(documentCount) ? undefined : documentCount,
    });
  }
  const header: SnapshotHeader = {
    version,
    documentCount,
    generation: readU64(view, 24),
    bodySize: readU64(view, 32),
  };
  const claimed = { documentCount: Number.isNaN(documentCount) ? undefined : documentCount };
  if (view.getUint32(12, true) !== HEADER_SIZE) {
    throw new SearchSnapshotCorruptError("garbage", path, "bad header size", claimed);
  }
  const actual = bytes.length - HEADER_SIZE;
  if (Number.isNaN(header.bodySize) || actual > header.bodySize) {
    throw new SearchSnapshotCorruptError("garbage", path, "size does not match header", claimed);
  }
  if (actual < header.bodySize) {
    throw new SearchSnapshotCorruptError(
      "truncated",
      path,
      `truncated body (${actual} of ${header.bodySize} bytes)`,
      claimed,
    );
  }
  const body = bytes.subarray(HEADER_SIZE);
  const digest = createHash("sha256").update(body).update(bytes.subarray(0, HASHED_HEADER))
    .digest();
  const stored = bytes.subarray(HASHED_HEADER, HEADER_SIZE);
  for (let i = 0; i < 32; i++) {
    if (digest[i] !== stored[i]) {
      throw new SearchSnapshotCorruptError("checksum", path, "checksum mismatch", claimed);
    }
  }
  if (Number.isNaN(header.documentCount) || Number.isNaN(header.generation)) {
    throw new SearchSnapshotCorruptError("garbage", path, "header values out of range");
  }
  if (expectedGeneration !== undefined && header.generation !== expectedGeneration) {
    throw new SearchSnapshotStaleError(path, header.generation, expectedGeneration, claimed);
  }
  return { header, body };
}

// deno-lint-ignore no-explicit-any
type Json = any;
type IndexEntry = [string, Record<string, Record<string, number>>];

const INDEX_KEY = ',"index":[';
const INDEX_TAIL = '],"serializationVersion":2}';

/** The index entries in batches: `parsed` as one batch, or `text` parsed a slice at a time. */
function* indexSlices(parsed: IndexEntry[], text: string | undefined): Generator<IndexEntry[]> {
  if (text === undefined) {
    yield parsed;
    return;
  }
  // Entries are separated by ",\n"; a newline never occurs inside a JSON string.
  for (let pos = 0; pos < text.length;) {
    let end = text.indexOf("\n", pos + SLICE_CHARS);
    if (end < 0) end = text.length;
    let slice = text.slice(pos, end).trim();
    if (slice.endsWith(",")) slice = slice.slice(0, -1);
    if (slice.startsWith(",")) slice = slice.slice(1);
    pos = end;
    if (slice.length > 0) yield JSON.parse(`[${slice}]`);
  }
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/**
 * Build an engine from a verified snapshot body, yielding to the event loop between slices.
 * Throws {@link SearchSnapshotCorruptError} when the JSON is not what this module writes.
 */
export async function loadEngine(path: string, file: SnapshotFile): Promise<Engine> {
  const bad = (reason: string, cause?: unknown): SearchSnapshotError =>
    new SearchSnapshotCorruptError("garbage", path, reason, {
      cause,
      documentCount: file.header.documentCount,
    });
  let js: Json;
  let indexText: string | undefined;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(file.body);
    // JSON.parse of the whole body blocks the event loop ~0.1 s at 100k tracks. The head
    // (ids, lengths) is parsed at once; the index, one entry per line, in slices below. The
    // key cannot occur earlier: the head holds only numbers, and strings escape their quotes.
    const at = text.indexOf(INDEX_KEY);
    if (at >= 0 && text.endsWith(INDEX_TAIL)) {
      js = JSON.parse(text.slice(0, at) + INDEX_KEY + INDEX_TAIL);
      indexText = text.slice(at + INDEX_KEY.length, text.length - INDEX_TAIL.length);
    } else {
      js = JSON.parse(text);
    }
  } catch (e) {
    throw bad("body is not valid JSON", e);
  }
  if (
    js === null || typeof js !== "object" || js.serializationVersion !== 2 ||
    typeof js.documentIds !== "object" || typeof js.fieldLength !== "object" ||
    !Array.isArray(js.index) || !Array.isArray(js.averageFieldLength) ||
    !Number.isSafeInteger(js.nextId) || js.documentCount !== file.header.documentCount
  ) {
    throw bad("body does not match the header");
  }
  if (JSON.stringify(js.fieldIds) !== JSON.stringify(FIELD_IDS)) {
    throw bad("indexed fields differ from this version's");
  }
  const ms = createEngine();
  const m = internals(ms);
  try {
    let n = 0;
    let nextTick = LOAD_SLICE;
    for (const key of Object.keys(js.documentIds)) {
      const short = Number(key);
      const id = js.documentIds[key];
      m._documentIds.set(short, id);
      m._idToShortId.set(id, short);
      if (++n >= nextTick) {
        nextTick = n + LOAD_SLICE;
        await tick();
      }
    }
    for (const key of Object.keys(js.fieldLength)) {
      m._fieldLength.set(Number(key), js.fieldLength[key]);
      if (++n >= nextTick) {
        nextTick = n + LOAD_SLICE;
        await tick();
      }
    }
    for (const entries of indexSlices(js.index, indexText)) {
      for (const [term, fields] of entries) {
        const data: TermData = new Map();
        for (const fieldId of Object.keys(fields)) {
          const postings = new Map<number, number>();
          const obj = fields[fieldId];
          for (const short of Object.keys(obj)) postings.set(Number(short), obj[short]);
          n += postings.size;
          data.set(Number(fieldId), postings);
        }
        m._index.set(term, data);
      }
      if (++n >= nextTick) {
        nextTick = n + LOAD_SLICE;
        await tick();
      }
    }
  } catch (e) {
    throw bad("body does not have the expected shape", e);
  }
  m._documentCount = js.documentCount;
  m._nextId = js.nextId;
  m._avgFieldLength = js.averageFieldLength;
  m._dirtCount = 0;
  if (m._documentIds.size !== js.documentCount || m._idToShortId.size !== js.documentCount) {
    throw bad("document ids do not match the document count");
  }
  return ms;
}

/**
 * Verify the snapshot at `path` without loading it (for `musicfs check`): resolves to its
 * header, or throws the {@link SearchSnapshotError} subclass `SearchIndex.open` would.
 */
export async function inspectSnapshot(
  path: string,
  opts: { generation?: number } = {},
): Promise<SnapshotHeader> {
  const file = await readSnapshot(path, opts.generation);
  await loadEngine(path, file);
  return file.header;
}
