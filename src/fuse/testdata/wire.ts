/**
 * Kernel-side helpers for the protocol tests: build requests as the kernel would send them and
 * collect a {@link ProtocolServer}'s replies, all without /dev/fuse.
 */
import { type ProtocolOptions, ProtocolServer } from "../protocol_server.ts";
import type { FuseOperations } from "../ops.ts";
import { FuseInHeader, FuseOutHeader, getU64, setU64, writeInHeader } from "../structs.ts";

const encoder = new TextEncoder();

/** Caller ids every test request carries. */
export const CALLER = { uid: 1000, gid: 100, pid: 4242 };

/** A request: header for `opcode`/`unique`/`nodeid`, then the `body` parts concatenated. */
export function request(
  opcode: number,
  unique: number,
  nodeid: number,
  ...body: (Uint8Array | string)[]
): Uint8Array<ArrayBuffer> {
  const parts = body.map((b) => typeof b === "string" ? cstr(b) : b);
  const len = FuseInHeader.SIZE + parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(len);
  writeInHeader(new DataView(buf.buffer), { len, opcode, unique, nodeid, ...CALLER });
  let off = FuseInHeader.SIZE;
  for (const p of parts) {
    buf.set(p, off);
    off += p.length;
  }
  return buf;
}

/** A NUL-terminated name. */
export function cstr(s: string): Uint8Array {
  const b = encoder.encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** Little-endian u32 fields. */
export function u32(...ns: number[]): Uint8Array {
  const b = new Uint8Array(4 * ns.length);
  const v = new DataView(b.buffer);
  ns.forEach((n, i) => v.setUint32(i * 4, n >>> 0, true));
  return b;
}

/** Little-endian u64 fields. */
export function u64(...ns: number[]): Uint8Array {
  const b = new Uint8Array(8 * ns.length);
  const v = new DataView(b.buffer);
  ns.forEach((n, i) => setU64(v, i * 8, n));
  return b;
}

/** `fuse_read_in` for READ/READDIR/READDIRPLUS. */
export function readIn(fh: number, offset: number, size: number): Uint8Array {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  setU64(v, 0, fh);
  setU64(v, 8, offset);
  v.setUint32(16, size, true);
  return b;
}

/** Bytes from hex, whitespace and `|` (field separators) ignored. */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/[\s|]/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Bytes as hex. */
export function toHex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** A decoded reply. */
export interface Reply {
  /** The whole reply. */
  bytes: Uint8Array;
  /** `len` field. */
  len: number;
  /** Positive errno, 0 on success. */
  error: number;
  /** The request it answers. */
  unique: number;
  /** Bytes after the header. */
  body: Uint8Array;
  /** A view of `body`. */
  v: DataView;
}

function decode(bytes: Uint8Array): Reply {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const body = bytes.subarray(FuseOutHeader.SIZE);
  return {
    bytes,
    len: v.getUint32(0, true),
    error: -v.getInt32(4, true) || 0,
    unique: getU64(v, 8),
    body,
    v: new DataView(body.buffer, body.byteOffset, body.byteLength),
  };
}

/** Lets pending handlers (promise chains, timers of 0) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
}

/** A protocol server over `ops` whose replies are copied into {@link Wire.replies}. */
export class Wire {
  /** Every reply so far, in order. */
  readonly replies: Reply[] = [];
  /** The server under test. */
  readonly server: ProtocolServer;

  /** Serve `ops` with `opts`. */
  constructor(ops: FuseOperations, opts: ProtocolOptions = {}) {
    this.server = new ProtocolServer(
      ops,
      (buf, len) => this.replies.push(decode(buf.slice(0, len))),
      opts,
    );
  }

  /** Send `req`, let handlers run, and return the replies it produced (usually one). */
  async send(req: Uint8Array, len = req.length): Promise<Reply[]> {
    const before = this.replies.length;
    this.server.handle(req, len);
    await settle();
    return this.replies.slice(before);
  }

  /** Send `req` and return its one reply; throws when there is not exactly one. */
  async call(req: Uint8Array): Promise<Reply> {
    const got = await this.send(req);
    if (got.length !== 1) throw new Error(`expected one reply, got ${got.length}`);
    return got[0];
  }
}
