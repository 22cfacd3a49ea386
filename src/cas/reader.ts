/**
 * Reads of origin files through the chunk cache (SPEC 6): what is cached is served from the
 * cache whatever the origin's state; what is not is fetched from the origin a whole chunk at a
 * time under a timeout, stored, and served. A read never waits on a dead origin for longer
 * than the timeout, and not at all once the origin is known to be unhealthy.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import { CasReadError, CasWriteError, StoreFullError } from "./errors.ts";
import { type CasStore, fileKey } from "./store.ts";

const log = logger("cas", "reader");

/** One version of an origin file, as the library knows it. */
export interface SourceFile {
  /** The origin (library) the file belongs to, as the health monitor knows it. */
  originId: string;
  /** The file's id in the library. */
  id: string | number;
  /** Size at the last scan; reads stop there. */
  size: number;
  /** Modification time at the last scan (`stat().mtime.getTime()`). */
  mtimeMs: number;
  /** Status-change time at the last scan; absent when not known (then not checked). */
  ctimeMs?: number;
  /** Inode number at the last scan; absent when not known (then not checked). */
  ino?: number;
  /** Absolute path of the source file. */
  path: string;
}

/** What {@link CachedReader} uses of the {@link CasStore}. */
export type ChunkCache = Pick<CasStore, "readChunkFor" | "storeChunkFor" | "getChunkFor">;

/** Options of {@link CachedReader}. */
export interface CachedReaderOptions {
  /** The chunk cache (a {@link CasStore}). */
  cas: ChunkCache;
  /** Bytes per chunk. Default 1 MiB. Changing it orphans what is cached (the LRU ages it out). */
  chunkSize?: number;
  /** Origin health; uncached reads of an unhealthy origin fail with EIO at once. */
  health?: { isHealthy(originId: string): boolean };
  /** Time allowed to read one chunk from the origin. Default 1500 ms. */
  readTimeoutMs?: number;
  /**
   * Recently used chunks kept in memory, so the small reads a player makes within one chunk do
   * not re-read and re-hash the chunk file each time. Default 8; 0 disables.
   */
  memoryChunks?: number;
  /** Files remembered for {@link CachedReader.fetchChunk} by their key. Default 1024. */
  maxPrefetchFiles?: number;
  /**
   * Opens a source for a chunk fetch (the daemon's checked, nonblocking open); default
   * {@link openSourcePlain}. May reject; the fetch then fails with EIO.
   */
  openSource?: (file: SourceFile) => Promise<OpenSource>;
}

/** A chunk being loaded: its bytes, then the outcome of storing them. */
interface Load {
  bytes: Promise<Uint8Array>;
  /** Settles once the store is done: the error when it failed; never rejects. */
  stored: Promise<Error | undefined>;
}

/**
 * Serves byte ranges of origin files from the chunk cache (`chunkNo = floor(offset /
 * chunkSize)`), filling it from the origin on a miss.
 *
 * - A miss reads the whole chunk from the source under `readTimeoutMs`, after checking that the
 *   source still has the scanned size and mtime (so no other version's bytes are cached under
 *   this version's key); a source read that times out is abandoned with EIO.
 * - While an origin is unhealthy, or one of its chunk reads has timed out and is still stuck,
 *   misses fail with EIO at once; cached chunks are still served.
 * - Concurrent reads of the same chunk share one fetch. A chunk that does not fit in the cache
 *   (StoreFullError) is still served.
 *
 * For the {@link Prefetcher}: `fetchChunk` is its FetchChunk and {@link prefetchFile} says what
 * to enqueue.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { CachedReader, CasReadError, CasStore, Prefetcher, type SourceFile } from "./mod.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/song.flac`;
 * await Deno.writeFile(path, new Uint8Array(300_000).fill(7));
 * const { size, mtime } = await Deno.stat(path);
 * const file: SourceFile = { originId: "1", id: 1, size, mtimeMs: mtime!.getTime(), path };
 * const cas = await CasStore.open({ dir: `${dir}/cache`, maxSize: 16 * 1024 ** 2 });
 * const down = new Set<string>(); // what the HealthMonitor would say
 * const reader = new CachedReader({
 *   cas,
 *   chunkSize: 64 * 1024,
 *   health: { isHealthy: (originId) => !down.has(originId) },
 * });
 * const stop = new AbortController(); // the daemon's shutdown
 * const prefetcher = new Prefetcher({ fetchChunk: reader.fetchChunk, signal: stop.signal });
 * try {
 *   const dst = new Uint8Array(4096);
 *   assert.equal(await reader.read(file, 0, dst), 4096); // chunk 0: from the source, now cached
 *   await reader.idle();
 *   // The player opened the track: fetch the rest of it in the background.
 *   const { key, chunkNos } = reader.prefetchFile(file);
 *   assert.deepEqual(chunkNos, [1, 2, 3, 4]);
 *   prefetcher.enqueue(key, chunkNos);
 *   await prefetcher.idle();
 *   down.add("1"); // the share goes away: what is cached is still served...
 *   assert.equal(await reader.read(file, 299_000, dst), 1000);
 *   // ...and a read of what is not fails at once (EIO) instead of hanging.
 *   const other = { ...file, id: 2, mtimeMs: file.mtimeMs + 1 };
 *   await assert.rejects(reader.read(other, 0, dst), CasReadError);
 * } finally {
 *   stop.abort();
 *   await reader.idle();
 *   await cas.close();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export class CachedReader {
  readonly #cas: ChunkCache;
  readonly #chunkSize: number;
  readonly #health?: { isHealthy(originId: string): boolean };
  readonly #timeoutMs: number;
  readonly #memoryChunks: number;
  readonly #maxFiles: number;
  readonly #loads = new Map<string, Load>();
  /** LRU of verified chunk bytes by chunk id; iteration order is oldest first. */
  readonly #memory = new Map<string, Uint8Array>();
  /** Files known by key, for fetchChunk; iteration order is oldest first. */
  readonly #files = new Map<string, SourceFile>();
  /** Origin reads that timed out and have not returned yet, by origin. */
  readonly #stuck = new Map<string, number>();
  readonly #storing = new Set<Promise<unknown>>();
  readonly #open: (file: SourceFile) => Promise<OpenSource>;

  /** A reader over `opts.cas`. */
  constructor(opts: CachedReaderOptions) {
    const chunkSize = opts.chunkSize ?? 1024 * 1024;
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
      throw new RangeError(`Cannot read through the cache: bad chunk size ${chunkSize}`);
    }
    this.#cas = opts.cas;
    this.#chunkSize = chunkSize;
    this.#health = opts.health;
    this.#timeoutMs = opts.readTimeoutMs ?? 1500;
    this.#memoryChunks = Math.max(0, Math.floor(opts.memoryChunks ?? 8));
    this.#maxFiles = Math.max(1, Math.floor(opts.maxPrefetchFiles ?? 1024));
    this.#open = opts.openSource ?? openSourcePlain;
  }

  /** Bytes per chunk. */
  get chunkSize(): number {
    return this.#chunkSize;
  }

  /** How many chunks a file of `size` bytes has. */
  chunkCount(size: number): number {
    return Math.ceil(size / this.#chunkSize);
  }

  /**
   * Read `[offset, offset + dst.length)` of `file` (clipped to its size) into `dst`; returns the
   * byte count, 0 at or past the end. Throws {@link CasReadError} when a needed chunk is not
   * cached and the origin is unhealthy, too slow, changed or failing, and a RangeError for an
   * offset that is not a non-negative safe integer.
   */
  async read(file: SourceFile, offset: number, dst: Uint8Array): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(`Cannot read at offset ${offset}`);
    }
    const end = Math.min(offset + dst.length, file.size);
    if (end <= offset) return 0;
    const key = fileKey(file);
    const first = Math.floor(offset / this.#chunkSize);
    const last = Math.floor((end - 1) / this.#chunkSize);
    const parts: Promise<void>[] = [];
    for (let n = first; n <= last; n++) {
      const chunkStart = n * this.#chunkSize;
      parts.push(
        this.#load(file, key, n).bytes.then((bytes) => {
          const from = Math.max(offset, chunkStart);
          const to = Math.min(end, chunkStart + bytes.length);
          dst.set(bytes.subarray(from - chunkStart, to - chunkStart), from - offset);
        }),
      );
    }
    await Promise.all(parts);
    return end - offset;
  }

  /**
   * Remember `file` for {@link fetchChunk} and list its chunks from `fromOffset` on that are not
   * cached yet, for `prefetcher.enqueue(key, chunkNos)`.
   */
  prefetchFile(file: SourceFile, fromOffset = 0): { key: string; chunkNos: number[] } {
    const key = fileKey(file);
    this.#files.delete(key);
    this.#files.set(key, file);
    if (this.#files.size > this.#maxFiles) {
      this.#files.delete(this.#files.keys().next().value!);
    }
    const chunkNos: number[] = [];
    const count = this.chunkCount(file.size);
    for (let n = Math.floor(Math.max(0, fromOffset) / this.#chunkSize); n < count; n++) {
      if (this.#cas.getChunkFor(key, n) === null) chunkNos.push(n);
    }
    return { key, chunkNos };
  }

  /**
   * The Prefetcher's FetchChunk: make sure chunk `chunkNo` of the file registered under `key`
   * (by {@link prefetchFile}) is cached. Rethrows {@link StoreFullError}, which stops the
   * prefetcher; `signal` only stops the wait, a fetch shared with readers goes on.
   */
  readonly fetchChunk = async (key: string, chunkNo: number, signal?: AbortSignal) => {
    const file = this.#files.get(key);
    if (!file) throw new Error(`Cannot prefetch chunk ${chunkNo} of ${key}: file not registered`);
    if (this.#cas.getChunkFor(key, chunkNo) !== null) return;
    const load = this.#load(file, key, chunkNo);
    const stored = load.bytes.then(async (bytes) => {
      const err = await load.stored;
      if (err || this.#cas.getChunkFor(key, chunkNo) !== null) return err;
      // Served from memory by a read whose store failed (or that read it before a store of
      // this chunk was dropped): this is the prefetcher's chance to keep it.
      return await this.#cas.storeChunkFor(key, chunkNo, bytes).then(() => undefined, (e) => e);
    });
    const err = await abortable(stored, signal);
    if (err instanceof StoreFullError) throw err;
  };

  /** Resolves once the chunk stores started so far have finished (before closing the cache). */
  async idle(): Promise<void> {
    while (this.#storing.size) await Promise.allSettled([...this.#storing]);
  }

  /** The load of one chunk, shared by everyone asking for it until it is stored. */
  #load(file: SourceFile, key: string, chunkNo: number): Load {
    const id = chunkId(key, chunkNo);
    const running = this.#loads.get(id);
    if (running) return running;
    let settleStored!: (e: Error | undefined) => void;
    const stored = new Promise<Error | undefined>((r) => settleStored = r);
    const bytes = this.#bytesOf(file, key, chunkNo, id, settleStored);
    const load: Load = { bytes, stored };
    this.#loads.set(id, load);
    // Readers that join before the store lands share the fetched bytes instead of refetching.
    const done = bytes.then(() => stored, () => undefined).then(() => {
      if (this.#loads.get(id) === load) this.#loads.delete(id);
    });
    this.#track(done);
    return load;
  }

  async #bytesOf(
    file: SourceFile,
    key: string,
    chunkNo: number,
    id: string,
    settleStored: (e: Error | undefined) => void,
  ): Promise<Uint8Array> {
    let storing = false;
    try {
      const kept = this.#memory.get(id);
      if (kept) {
        this.#remember(id, kept);
        return kept;
      }
      const expected = this.#expectedLength(file, chunkNo);
      let cached: Uint8Array | null;
      try {
        cached = await this.#cas.readChunkFor(key, chunkNo);
      } catch (e) {
        throw eio(`Cannot read chunk ${chunkNo} of ${file.path} from the cache`, e);
      }
      if (cached && cached.length === expected) {
        this.#remember(id, cached);
        return cached;
      }
      const bytes = await this.#fetch(file, chunkNo, expected);
      this.#remember(id, bytes);
      storing = true;
      this.#cas.storeChunkFor(key, chunkNo, bytes).then(
        () => settleStored(undefined),
        (e: Error) => {
          // The store itself warns about write failures (throttled); no second line per chunk.
          if (e instanceof StoreFullError || e instanceof CasWriteError) {
            log.debug("Serving chunk {chunkNo} of {path} uncached: {message}", {
              chunkNo,
              path: file.path,
              message: e.message,
            });
          } else {
            log.warn("Cannot cache chunk {chunkNo} of {path}: {error}", {
              chunkNo,
              path: file.path,
              error: String(e),
            });
          }
          settleStored(e);
        },
      );
      return bytes;
    } finally {
      if (!storing) settleStored(undefined);
    }
  }

  /** Read chunk `chunkNo` of `file` from its origin, bounded by the read timeout. */
  async #fetch(file: SourceFile, chunkNo: number, expected: number): Promise<Uint8Array> {
    const what = `chunk ${chunkNo} of ${file.path}`;
    if (this.#health && !this.#health.isHealthy(file.originId)) {
      throw eio(`Cannot read ${what}: origin ${file.originId} is unavailable and it is not cached`);
    }
    const stuck = this.#stuck.get(file.originId) ?? 0;
    if (stuck > 0) {
      throw eio(
        `Cannot read ${what}: ${stuck} earlier read(s) of origin ${file.originId} are still ` +
          `stuck and it is not cached`,
      );
    }
    const reading = readRange(this.#open, file, chunkNo * this.#chunkSize, expected);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), this.#timeoutMs)
    );
    try {
      const got = await Promise.race([reading, timedOut]);
      if (got === "timeout") {
        // A blocked read cannot be cancelled; it is abandoned, and further misses of this origin
        // fail at once until it returns, so stuck reads do not pile up on the blocking threads.
        this.#stuck.set(file.originId, (this.#stuck.get(file.originId) ?? 0) + 1);
        const release = () => {
          const n = (this.#stuck.get(file.originId) ?? 1) - 1;
          if (n > 0) this.#stuck.set(file.originId, n);
          else this.#stuck.delete(file.originId);
        };
        reading.then(release, release);
        log.warn("Reading {what} took longer than {ms} ms; answering EIO", {
          what,
          ms: this.#timeoutMs,
        });
        throw eio(`Cannot read ${what}: no answer from the origin within ${this.#timeoutMs} ms`);
      }
      return got;
    } catch (e) {
      if (e instanceof CasReadError) throw e;
      throw eio(`Cannot read ${what}: ${e instanceof Error ? e.message : e}`, e);
    } finally {
      clearTimeout(timer);
    }
  }

  #expectedLength(file: SourceFile, chunkNo: number): number {
    return Math.max(0, Math.min(this.#chunkSize, file.size - chunkNo * this.#chunkSize));
  }

  #remember(id: string, bytes: Uint8Array): void {
    if (this.#memoryChunks === 0) return;
    this.#memory.delete(id);
    this.#memory.set(id, bytes);
    if (this.#memory.size > this.#memoryChunks) {
      this.#memory.delete(this.#memory.keys().next().value!);
    }
  }

  #track(p: Promise<unknown>): void {
    this.#storing.add(p);
    p.finally(() => this.#storing.delete(p));
  }
}

/** An open source file, as {@link CachedReaderOptions.openSource} hands it over. */
export interface OpenSource {
  /** Size of the opened file. */
  size: number;
  /** Its modification time, ms. */
  mtimeMs: number;
  /** Its status-change time, ms. */
  ctimeMs: number;
  /** Its inode number. */
  ino: number;
  /** Read into `dst` at `offset`; resolves to the byte count, 0 at the end. */
  read(dst: Uint8Array, offset: number): Promise<number>;
  /** Close it (never throws). */
  close(): void;
}

/** The default {@link CachedReaderOptions.openSource}: Deno's open, following symlinks. */
export async function openSourcePlain(file: SourceFile): Promise<OpenSource> {
  const f = await Deno.open(file.path, { read: true });
  try {
    const st = await f.stat();
    return {
      size: st.size,
      mtimeMs: st.mtime?.getTime() ?? 0,
      ctimeMs: st.ctime?.getTime() ?? 0,
      ino: st.ino ?? 0,
      read: async (dst, offset) => {
        await f.seek(offset, Deno.SeekMode.Start);
        return (await f.read(dst)) ?? 0;
      },
      close: () => f.close(),
    };
  } catch (e) {
    f.close();
    throw e;
  }
}

/**
 * `length` bytes at `offset` of the source, after checking it still is the scanned version.
 * Rejects on any mismatch or short read; the file is closed whenever the calls return, even
 * after the caller gave up on them.
 */
async function readRange(
  open: (file: SourceFile) => Promise<OpenSource>,
  file: SourceFile,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const f = await open(file);
  try {
    if (
      f.size !== file.size || f.mtimeMs !== file.mtimeMs ||
      (file.ctimeMs !== undefined && f.ctimeMs !== file.ctimeMs) ||
      (file.ino !== undefined && f.ino !== file.ino)
    ) {
      throw new Error(
        `the source changed since it was scanned (size ${f.size}, mtime ${f.mtimeMs}, ` +
          `ctime ${f.ctimeMs}, inode ${f.ino}; expected ${file.size}, ${file.mtimeMs}, ` +
          `${file.ctimeMs ?? "-"}, ${file.ino ?? "-"})`,
      );
    }
    const buf = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const n = await f.read(buf.subarray(got), offset + got);
      if (n <= 0) {
        throw new Error(`the source ended at ${offset + got} bytes, ${file.size} expected`);
      }
      got += n;
    }
    return buf;
  } finally {
    f.close();
  }
}

function chunkId(key: string, chunkNo: number): string {
  return `${chunkNo}\0${key}`;
}

function eio(message: string, cause?: unknown): CasReadError {
  return new CasReadError(message, cause === undefined ? undefined : { cause });
}

function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}
