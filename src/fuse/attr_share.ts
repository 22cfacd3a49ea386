/**
 * Attributes the kernel may ask for again, in shared memory, so the request reader thread can
 * answer a GETATTR itself (one thread, like libfuse) instead of handing it to the main thread.
 * Only for filesystems that change attributes solely together with an invalidation
 * (`FuseOperations.shareAttrs`): the main thread writes each attribute set it sends
 * the kernel (LOOKUP, READDIRPLUS, GETATTR replies) and drops an inode on FORGET, INVAL_INODE
 * and DELETE, so what the reader serves is exactly what the main thread would.
 *
 * An open-addressing table keyed by inode, guarded by a sequence lock: the main thread (the only
 * writer) makes the sequence odd while it writes; the reader copies an entry and keeps it only if
 * the sequence was even and unchanged around the copy. A full table skips inserts (the reader
 * then misses and the main thread answers).
 */
import { FuseAttr, FuseAttrOut, writeTtl } from "./structs.ts";

const SEQ = 0;
const COUNT = 1;
const DEAD = 2;
const HEADER = 64;
const EMPTY = 0;
const TOMB = -1;

/** The shared table; one instance per thread over the same buffer. */
export class AttrShare {
  /** The shared memory, to post to the reader. */
  readonly sab: SharedArrayBuffer;
  #ctrl: Int32Array;
  #keys: Float64Array;
  #vals: Uint8Array;
  #cap: number;
  #mask: number;

  /** A table of `capacity` slots (a power of two), or a view of an existing `sab`. */
  constructor(capacity: number | SharedArrayBuffer) {
    const cap = typeof capacity === "number" ? capacity : AttrShare.#capOf(capacity);
    this.sab = typeof capacity === "number"
      ? new SharedArrayBuffer(HEADER + cap * 8 + cap * FuseAttrOut.SIZE)
      : capacity;
    this.#cap = cap;
    this.#mask = cap - 1;
    this.#ctrl = new Int32Array(this.sab, 0, HEADER / 4);
    this.#keys = new Float64Array(this.sab, HEADER, cap);
    this.#vals = new Uint8Array(this.sab, HEADER + cap * 8, cap * FuseAttrOut.SIZE);
  }

  static #capOf(sab: SharedArrayBuffer): number {
    return (sab.byteLength - HEADER) / (8 + FuseAttrOut.SIZE);
  }

  /** Live entries. */
  get size(): number {
    return this.#ctrl[COUNT];
  }

  #slot(ino: number): number {
    const lo = ino >>> 0;
    const hi = (ino / 4294967296) >>> 0;
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> 0 & this.#mask;
  }

  #find(ino: number): number {
    for (let i = this.#slot(ino), n = 0; n < this.#cap; i = (i + 1) & this.#mask, n++) {
      const k = this.#keys[i];
      if (k === ino) return i;
      if (k === EMPTY) return -1;
    }
    return -1;
  }

  /**
   * Main thread: remember `attr` (the 88-byte `fuse_attr` at `src[off..]`) for `ino`, to be
   * answered with an attribute TTL of `ttlMs`.
   */
  put(ino: number, src: Uint8Array, off: number, ttlMs: number): void {
    if (ino <= 0) return;
    let i = this.#find(ino);
    if (i < 0) {
      if ((this.#ctrl[COUNT] + this.#ctrl[DEAD]) * 4 >= this.#cap * 3) {
        if (this.#ctrl[DEAD] * 4 < this.#cap) return; // full of live entries: skip
        this.#rebuild();
      }
      i = this.#slot(ino);
      while (this.#keys[i] !== EMPTY && this.#keys[i] !== TOMB) i = (i + 1) & this.#mask;
    }
    Atomics.add(this.#ctrl, SEQ, 1);
    if (this.#keys[i] !== ino) {
      if (this.#keys[i] === TOMB) this.#ctrl[DEAD]--;
      this.#ctrl[COUNT]++;
      this.#keys[i] = ino;
    }
    const base = i * FuseAttrOut.SIZE;
    const v = new DataView(this.#vals.buffer, this.#vals.byteOffset + base, FuseAttrOut.SIZE);
    writeTtl(v, FuseAttrOut.attrValid, FuseAttrOut.attrValidNsec, ttlMs);
    v.setUint32(FuseAttrOut.attrValidNsec + 4, 0, true);
    this.#vals.set(src.subarray(off, off + FuseAttr.SIZE), base + FuseAttrOut.attr);
    Atomics.add(this.#ctrl, SEQ, 1);
  }

  /** Main thread: forget `ino` (its attributes changed, or the kernel forgot it). */
  delete(ino: number): void {
    const i = this.#find(ino);
    if (i < 0) return;
    Atomics.add(this.#ctrl, SEQ, 1);
    this.#keys[i] = TOMB;
    this.#ctrl[COUNT]--;
    this.#ctrl[DEAD]++;
    Atomics.add(this.#ctrl, SEQ, 1);
  }

  /** Main thread: forget everything. */
  clear(): void {
    Atomics.add(this.#ctrl, SEQ, 1);
    this.#keys.fill(EMPTY);
    this.#ctrl[COUNT] = 0;
    this.#ctrl[DEAD] = 0;
    Atomics.add(this.#ctrl, SEQ, 1);
  }

  #rebuild(): void {
    const live: [number, Uint8Array][] = [];
    for (let i = 0; i < this.#cap; i++) {
      const k = this.#keys[i];
      if (k !== EMPTY && k !== TOMB) {
        const b = i * FuseAttrOut.SIZE;
        live.push([k, this.#vals.slice(b, b + FuseAttrOut.SIZE)]);
      }
    }
    Atomics.add(this.#ctrl, SEQ, 1);
    this.#keys.fill(EMPTY);
    for (const [k, val] of live) {
      let i = this.#slot(k);
      while (this.#keys[i] !== EMPTY) i = (i + 1) & this.#mask;
      this.#keys[i] = k;
      this.#vals.set(val, i * FuseAttrOut.SIZE);
    }
    this.#ctrl[COUNT] = live.length;
    this.#ctrl[DEAD] = 0;
    Atomics.add(this.#ctrl, SEQ, 1);
  }

  /**
   * Reader thread: copy the `fuse_attr_out` (104 B) of `ino` to `dst[off..]`; false when it is
   * not there or the main thread was writing (then the main thread answers).
   */
  get(ino: number, dst: Uint8Array, off: number): boolean {
    const seq = Atomics.load(this.#ctrl, SEQ);
    if (seq & 1) return false;
    const i = this.#find(ino);
    if (i < 0) return false;
    const base = i * FuseAttrOut.SIZE;
    dst.set(this.#vals.subarray(base, base + FuseAttrOut.SIZE), off);
    return Atomics.load(this.#ctrl, SEQ) === seq && this.#keys[i] === ino;
  }
}
