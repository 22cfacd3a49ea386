/**
 * Reads FUSE requests from /dev/fuse on a thread of its own, into a ring of request slots in
 * shared memory that the session's main thread handles (layout in ring.ts).
 *
 * Why a thread: Deno's blocking pool has 32 threads shared by every async file operation and
 * nonblocking FFI call of the main thread; when they are all busy (stuck reads of a dead network
 * share, or many readers of our own mount), a pooled wait would never run and the mount would
 * stop answering. A worker's synchronous poll(2) and read(2) cannot be starved that way.
 * Why a ring: the worker reads the next request while the main thread handles the last one,
 * and wakes it through Atomics (no message per request): a request costs one cross-thread
 * wake-up instead of a message each way.
 *
 * Protocol: the main thread posts `{ fd, wake, sab, slots, slotSize }` once. The worker reads
 * requests into slot `head % slots`, records their length and bumps `head`; it waits while the
 * ring is full (`head - tail == slots`). When /dev/fuse ends (ENODEV), the wake eventfd is
 * readable (unmount) or `stop` is set, it records the state and exits its loop. Every change
 * bumps `events` and notifies it.
 */
import { errno, libc } from "../sys/libc.ts";
import { Errno } from "../sys/errno.ts";
import { RING, type RingSetup, RingState, slotBase } from "./ring.ts";
import { AttrShare } from "./attr_share.ts";
import { Op } from "./opcodes.ts";
import {
  FuseAttrOut,
  FuseGetattrIn,
  FuseInHeader,
  FuseOutHeader,
  getU64,
  writeOutHeader,
} from "./structs.ts";

const GETATTR_LEN = FuseInHeader.SIZE + FuseGetattrIn.SIZE;

self.onmessage = (e: MessageEvent<RingSetup>) => serve(e.data);

function serve({ fd, wake, sab, slots, slotSize, attrs }: RingSetup): void {
  const l = libc();
  const ctrl = new Int32Array(sab, 0, RING.WORDS + slots);
  const base = slotBase(slots);
  const bufs = Array.from(
    { length: slots },
    (_, i) =>
      new Uint8Array(sab, base + i * slotSize, slotSize) as unknown as Uint8Array<ArrayBuffer>,
  );
  const pollfds = new Uint8Array(16);
  const pv = new DataView(pollfds.buffer);
  pv.setInt32(0, fd, true);
  pv.setInt16(4, 1, true); // POLLIN
  pv.setInt32(8, wake, true);
  pv.setInt16(12, 1, true);
  const size = BigInt(slotSize);
  const share = attrs && new AttrShare(attrs);
  const reply = new Uint8Array(FuseOutHeader.SIZE + FuseAttrOut.SIZE);
  const rv = new DataView(reply.buffer);
  // A well-formed GETATTR whose inode's attributes are shared: answer it here, as the main
  // thread would (same bytes), and skip the hand-off.
  const answer = (req: Uint8Array, n: number): boolean => {
    if (n !== GETATTR_LEN) return false;
    const v = new DataView(req.buffer, req.byteOffset, n);
    if (v.getUint32(FuseInHeader.opcode, true) !== Op.GETATTR) return false;
    if (v.getUint32(FuseInHeader.len, true) !== n) return false;
    if (!share!.get(getU64(v, FuseInHeader.nodeid), reply, FuseOutHeader.SIZE)) return false;
    writeOutHeader(rv, getU64(v, FuseInHeader.unique), reply.length);
    l.write(fd, reply, BigInt(reply.length));
    Atomics.add(ctrl, RING.ANSWERED, 1);
    return true;
  };
  const signal = () => {
    Atomics.add(ctrl, RING.EVENTS, 1);
    Atomics.notify(ctrl, RING.EVENTS);
  };
  const finish = (state: number, err = 0) => {
    Atomics.store(ctrl, RING.ERRNO, err);
    Atomics.store(ctrl, RING.STATE, state);
    signal();
  };
  for (;;) {
    if (Atomics.load(ctrl, RING.STOP)) return finish(RingState.CLOSED);
    const head = Atomics.load(ctrl, RING.HEAD);
    const tail = Atomics.load(ctrl, RING.TAIL);
    if (((head - tail) | 0) >= slots) {
      // Full: wait for the main thread to hand back a slot (recheck STOP now and then).
      Atomics.wait(ctrl, RING.TAIL, tail, 100);
      continue;
    }
    const slot = head & (slots - 1);
    const n = l.read(fd, bufs[slot], size);
    if (n >= 0) {
      if (share && answer(bufs[slot], n)) continue;
      ctrl[RING.WORDS + slot] = n;
      Atomics.store(ctrl, RING.HEAD, (head + 1) | 0);
      signal();
      continue;
    }
    const err = errno();
    if (err === Errno.EINTR || err === Errno.ENOENT) continue;
    if (err === Errno.ENODEV || err === Errno.ECONNABORTED) return finish(RingState.CLOSED);
    if (err !== Errno.EAGAIN) return finish(RingState.FAILED, err);
    let rc: number;
    do {
      pv.setInt16(6, 0, true);
      pv.setInt16(14, 0, true);
      rc = l.poll(pollfds, 2n as unknown as bigint, -1);
    } while (rc === 0 || (rc < 0 && errno() === Errno.EINTR));
    if (rc < 0) return finish(RingState.FAILED, errno());
    if (pv.getInt16(14, true) !== 0) return finish(RingState.CLOSED);
  }
}
