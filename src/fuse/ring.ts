/**
 * The shared-memory ring between the request reader (poll_worker.ts) and the session's main
 * thread: control words, one length per slot, then the request slots.
 */

/** Indices of the ring's control words (Int32Array at the start of the shared buffer). */
export const RING = {
  /** Requests written by the worker (wrapping int32). */
  HEAD: 0,
  /** Requests handled by the main thread (wrapping int32). */
  TAIL: 1,
  /** {@link RingState}. */
  STATE: 2,
  /** The errno when STATE is FAILED. */
  ERRNO: 3,
  /** Bumped on every change the main thread must see; it waits on this word. */
  EVENTS: 4,
  /** Set by the main thread to make the worker leave its loop. */
  STOP: 5,
  /** Requests the worker answered itself (GETATTR from the shared attributes). */
  ANSWERED: 6,
  /** Control words before the per-slot lengths. */
  WORDS: 8,
} as const;

/** The worker's state. */
export const RingState = { RUNNING: 0, CLOSED: 1, FAILED: 2 } as const;

/** What the main thread posts once. */
export interface RingSetup {
  /** The /dev/fuse fd (nonblocking). */
  fd: number;
  /** An eventfd made readable at unmount. */
  wake: number;
  /** Control words, slot lengths, then the slots. */
  sab: SharedArrayBuffer;
  /** Number of slots (a power of two). */
  slots: number;
  /** Bytes per slot. */
  slotSize: number;
  /** An AttrShare's memory: answer GETATTR from it when the inode is there. */
  attrs?: SharedArrayBuffer;
}

/** Byte offset of slot data in the shared buffer. */
export function slotBase(slots: number): number {
  return (RING.WORDS + slots) * 4 + 64 & ~63;
}

/**
 * The main thread's side of the ring: starts the reader worker over the device, hands queued
 * requests to a handler, waits for more, and stops the worker before the fds are closed.
 */
export class RequestRing {
  #ctrl: Int32Array;
  #slots: Uint8Array[];
  #views: DataView[];
  #mask: number;
  #tail = 0;
  #wake: number;
  #worker: Worker;

  /**
   * Start a reader of `fd` with `slots` request slots of `slotSize` bytes; it leaves when the
   * eventfd `wake` becomes readable. `attrs`: shared attributes it may answer GETATTR from.
   */
  constructor(
    fd: number,
    wake: number,
    slots: number,
    slotSize: number,
    attrs?: SharedArrayBuffer,
  ) {
    const sab = new SharedArrayBuffer(slotBase(slots) + slots * slotSize);
    this.#ctrl = new Int32Array(sab, 0, RING.WORDS + slots);
    this.#slots = Array.from(
      { length: slots },
      (_, i) => new Uint8Array(sab, slotBase(slots) + i * slotSize, slotSize),
    );
    this.#views = this.#slots.map((b) => new DataView(b.buffer, b.byteOffset, b.byteLength));
    this.#mask = slots - 1;
    this.#wake = wake;
    this.#worker = new Worker(new URL("./poll_worker.ts", import.meta.url), { type: "module" });
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#ctrl[RING.ERRNO] = 0;
      this.#finish(RingState.FAILED, e.message);
    };
    const setup: RingSetup = { fd, wake, sab, slots, slotSize, attrs };
    this.#worker.postMessage(setup);
  }

  /** Why the worker failed, when it threw (not a read error). */
  failure?: string;

  #finish(state: number, why?: string): void {
    this.failure = why;
    Atomics.store(this.#ctrl, RING.STATE, state);
    Atomics.add(this.#ctrl, RING.EVENTS, 1);
    Atomics.notify(this.#ctrl, RING.EVENTS);
  }

  /** GETATTRs the worker answered itself. */
  get answered(): number {
    return Atomics.load(this.#ctrl, RING.ANSWERED);
  }

  /** The change counter: read it before {@link drain}, pass it to {@link changed}. */
  events(): number {
    return Atomics.load(this.#ctrl, RING.EVENTS);
  }

  /**
   * Hand up to `max` queued requests to `handle` (each slot is free again when it returns);
   * stops early when `stop()` says so. Returns how many were handled.
   */
  drain(
    handle: (buf: Uint8Array, len: number, view: DataView) => void,
    max: number,
    stop: () => boolean,
  ): number {
    const ctrl = this.#ctrl;
    const head = Atomics.load(ctrl, RING.HEAD);
    let n = 0;
    while (this.#tail !== head && n < max && !stop()) {
      const slot = this.#tail & this.#mask;
      handle(this.#slots[slot], ctrl[RING.WORDS + slot], this.#views[slot]);
      this.#tail = (this.#tail + 1) | 0;
      n++;
      Atomics.store(ctrl, RING.TAIL, this.#tail);
      Atomics.notify(ctrl, RING.TAIL);
    }
    return n;
  }

  /** Whether requests are queued. */
  get pending(): boolean {
    return this.#tail !== Atomics.load(this.#ctrl, RING.HEAD);
  }

  /** The worker's state, and its errno when it FAILED reading. */
  state(): { state: number; errno: number } {
    return { state: Atomics.load(this.#ctrl, RING.STATE), errno: this.#ctrl[RING.ERRNO] };
  }

  /** Resolves when anything changed since `events` was read (new requests, a state change). */
  async changed(events: number): Promise<void> {
    const w = Atomics.waitAsync(this.#ctrl, RING.EVENTS, events);
    if (w.async) await w.value;
  }

  /**
   * Make the worker leave its loop and wait for it (up to 5 s): it may be in poll(2) or read(2)
   * on the device, and a worker in FFI cannot be terminated, so it is woken through the eventfd
   * and must be gone before the fds are closed under it.
   */
  async stop(write: (fd: number, bytes: Uint8Array) => void): Promise<void> {
    Atomics.store(this.#ctrl, RING.STOP, 1);
    Atomics.notify(this.#ctrl, RING.TAIL);
    write(this.#wake, new Uint8Array(new BigUint64Array([1n]).buffer));
    const deadline = performance.now() + 5000;
    while (this.state().state === RingState.RUNNING && performance.now() < deadline) {
      const w = Atomics.waitAsync(this.#ctrl, RING.EVENTS, this.events(), 100);
      if (w.async) await w.value;
    }
    this.#worker.terminate();
  }
}
