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
}

/** Byte offset of slot data in the shared buffer. */
export function slotBase(slots: number): number {
  return (RING.WORDS + slots) * 4 + 64 & ~63;
}
