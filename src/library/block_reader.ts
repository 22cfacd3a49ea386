/**
 * Random-access, synchronous reads of one open file for the tag parser and the container checks:
 * 64 KiB blocks with a small LRU, so the many small reads a tag parser makes cost one `readSync`
 * per block instead of one async node-compat read each.
 */

const BLOCK = 64 * 1024;
// Enough for the head, a tail and a few tag frames; a parser walking audio frames should not
// pull a whole large file into memory.
const MAX_BLOCKS = 16;

/**
 * A read of this long waited for the disk: copying 64 KiB from the page cache takes a few
 * microseconds, a disk read (even an SSD's) a tenth of a millisecond or more.
 */
const DISK_WAIT_MS = 0.25;

/**
 * Reads on this thread that waited for the disk, so far: how the parse workers tell a cold page
 * cache (their read-ahead pays off) from a warm one (it costs CPU for nothing). A slow read
 * because the thread was descheduled counts too; that errs on the side of reading ahead.
 */
export const diskWaits = { count: 0 };

/** Random-access reads of one open file, by 64 KiB blocks, synchronous underneath. */
export class BlockReader {
  readonly #file: Deno.FsFile;
  /** File size in bytes when opened. */
  readonly size: number;
  readonly #blocks = new Map<number, Uint8Array>();

  /** Reads `file`, whose size (at open) is `size`. */
  constructor(file: Deno.FsFile, size: number) {
    this.#file = file;
    this.size = size;
  }

  #readRaw(pos: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const t0 = performance.now();
    this.#file.seekSync(pos, Deno.SeekMode.Start);
    let got = 0;
    while (got < len) {
      const n = this.#file.readSync(out.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    if (performance.now() - t0 > DISK_WAIT_MS) diskWaits.count++;
    // A file that shrank under us: the parser sees the shorter data and reports the truncation.
    return got === len ? out : out.subarray(0, got);
  }

  #block(index: number): Uint8Array {
    let b = this.#blocks.get(index);
    if (b) {
      // Refresh the LRU position.
      this.#blocks.delete(index);
      this.#blocks.set(index, b);
      return b;
    }
    const pos = index * BLOCK;
    b = this.#readRaw(pos, Math.min(BLOCK, this.size - pos));
    this.#blocks.set(index, b);
    if (this.#blocks.size > MAX_BLOCKS) {
      this.#blocks.delete(this.#blocks.keys().next().value!);
    }
    return b;
  }

  /** Bytes `[start, end)`, clamped to the file; shorter only if the file shrank. */
  read(start: number, end: number): Uint8Array {
    start = Math.max(0, Math.min(start, this.size));
    end = Math.max(start, Math.min(end, this.size));
    const len = end - start;
    if (len > 4 * BLOCK) return this.#readRaw(start, len);
    const first = Math.floor(start / BLOCK);
    const last = Math.floor((end - 1) / BLOCK);
    if (len === 0) return new Uint8Array(0);
    if (first === last) {
      const b = this.#block(first);
      return b.subarray(start - first * BLOCK, end - first * BLOCK);
    }
    const out = new Uint8Array(len);
    let off = 0;
    for (let i = first; i <= last; i++) {
      const b = this.#block(i);
      const from = i === first ? start - i * BLOCK : 0;
      const to = i === last ? end - i * BLOCK : b.length;
      const part = b.subarray(from, Math.min(to, b.length));
      out.set(part, off);
      off += part.length;
    }
    return off === len ? out : out.subarray(0, off);
  }
}

/**
 * The part of the Blob interface music-metadata's blob tokenizer uses (`size`, `type`, `slice`,
 * `arrayBuffer`), served from a {@link BlockReader}.
 */
export class FileBlob {
  readonly #reader: BlockReader;
  readonly #start: number;
  readonly #end: number;
  /** MIME type, `""` when unknown. */
  readonly type: string;

  /** A blob of `reader`'s file (or its `[start, end)`) with MIME type `type` (`""`: unknown). */
  constructor(reader: BlockReader, type: string, start = 0, end = reader.size) {
    this.#reader = reader;
    this.type = type;
    this.#start = start;
    this.#end = end;
  }

  /** Length of this slice in bytes. */
  get size(): number {
    return this.#end - this.#start;
  }

  /** A view of `[start, end)` of this slice, like `Blob.slice`. */
  slice(start = 0, end = this.size): FileBlob {
    const s = this.#start + Math.max(0, Math.min(start, this.size));
    const e = this.#start + Math.max(0, Math.min(end, this.size));
    return new FileBlob(this.#reader, this.type, s, Math.max(s, e));
  }

  /** The bytes of this slice, like `Blob.arrayBuffer`. */
  arrayBuffer(): Promise<ArrayBuffer> {
    const bytes = this.#reader.read(this.#start, this.#end);
    // A block subarray must not leak the whole block's buffer to the caller.
    return Promise.resolve(
      bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        ? bytes.buffer as ArrayBuffer
        : bytes.slice().buffer as ArrayBuffer,
    );
  }
}
