/**
 * The FUSE opcodes and their table (go-fuse's opcode.go): for each, its name, the least body
 * size the kernel sends with it, how many NUL-terminated names follow that body, and the handler
 * that decodes the body and calls the {@link ProtocolServer}. The server checks lengths against
 * the table before it dispatches, so a handler never reads past the request.
 */
import type { ProtocolServer, Request } from "./protocol_server.ts";
import {
  FuseAccessIn,
  FuseBatchForgetIn,
  FuseFlushIn,
  FuseForgetIn,
  FuseForgetOne,
  FuseGetattrIn,
  FuseGetxattrIn,
  FuseInHeader,
  FuseInitIn,
  FuseInterruptIn,
  FuseOpenIn,
  FuseReadIn,
  FuseReleaseIn,
  getU64,
  readInitIn,
  readReadIn,
} from "./structs.ts";

/** Request opcodes. */
export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
} as const;

/** Decodes one request's body and hands it to the server; runs synchronously. */
export type Handler = (s: ProtocolServer, r: Request) => void;

/** One row of the opcode table. */
export interface Opcode {
  /** The opcode number. */
  opcode: number;
  /** Its name without `FUSE_`, for logs. */
  name: string;
  /** Least body size (after the 40-byte header) a well-formed request has. */
  inSize: number;
  /** NUL-terminated names after the fixed body (LOOKUP 1, GETXATTR 1). */
  names: number;
  /** Whether the kernel waits for a reply (FORGET, BATCH_FORGET, NOTIFY_REPLY do not). */
  replies: boolean;
  /** Decode and dispatch. */
  handler: Handler;
}

const H = FuseInHeader.SIZE;
const name = (r: Request) => r.names[0];
const readIn = { fh: 0, offset: 0, size: 0 };

const erofs: Handler = (s, r) => s.replyError(r.h.unique, 30);
const enosys: Handler = (s, r) => s.replyError(r.h.unique, 38);

// Handlers per opcode; everything not listed is ENOSYS (the kernel remembers it: for ACCESS it
// means "allowed", FSYNC "fine", SETLK "local locks").
const ROWS: [keyof typeof Op, number, number, Handler, boolean?][] = [
  ["INIT", FuseInitIn.MIN_SIZE, 0, (s, r) => s.init(r.h, readInitIn(r.v, H, r.bodyLen))],
  ["LOOKUP", 0, 1, (s, r) => s.lookup(r.h, name(r))],
  ["FORGET", FuseForgetIn.SIZE, 0, (s, r) => s.forget(r.h.nodeid, getU64(r.v, H)), false],
  ["BATCH_FORGET", FuseBatchForgetIn.SIZE, 0, batchForget, false],
  ["GETATTR", FuseGetattrIn.SIZE, 0, (s, r) => s.getattr(r.h)],
  ["READLINK", 0, 0, (s, r) => s.readlink(r.h)],
  ["OPEN", FuseOpenIn.SIZE, 0, (s, r) => s.open(r.h, r.v.getUint32(H + FuseOpenIn.flags, true))],
  ["READ", FuseReadIn.SIZE, 0, (s, r) => s.read(r.h, readReadIn(r.v, H, readIn))],
  ["RELEASE", FuseReleaseIn.SIZE, 0, (s, r) => s.release(r.h, getU64(r.v, H + FuseReleaseIn.fh))],
  ["OPENDIR", FuseOpenIn.SIZE, 0, (s, r) => s.opendir(r.h)],
  ["READDIR", FuseReadIn.SIZE, 0, (s, r) => s.readdir(r.h, readReadIn(r.v, H, readIn), false)],
  ["READDIRPLUS", FuseReadIn.SIZE, 0, (s, r) => s.readdir(r.h, readReadIn(r.v, H, readIn), true)],
  [
    "RELEASEDIR",
    FuseReleaseIn.SIZE,
    0,
    (s, r) => s.releasedir(r.h, getU64(r.v, H + FuseReleaseIn.fh)),
  ],
  ["STATFS", 0, 0, (s, r) => s.statfs(r.h)],
  [
    "GETXATTR",
    FuseGetxattrIn.SIZE,
    1,
    (s, r) => s.getxattr(r.h, name(r), r.v.getUint32(H + FuseGetxattrIn.size, true)),
  ],
  [
    "LISTXATTR",
    FuseGetxattrIn.SIZE,
    0,
    (s, r) => s.listxattr(r.h, r.v.getUint32(H + FuseGetxattrIn.size, true)),
  ],
  ["FLUSH", FuseFlushIn.SIZE, 0, (s, r) => s.replyEmpty(r.h.unique)],
  ["ACCESS", FuseAccessIn.SIZE, 0, enosys],
  ["INTERRUPT", FuseInterruptIn.SIZE, 0, (s, r) => s.interrupt(r.h.unique, getU64(r.v, H))],
  ["DESTROY", 0, 0, (s, r) => s.destroy(r.h.unique)],
  ["NOTIFY_REPLY", 0, 0, () => {}, false],
  // Opcodes that would modify the filesystem: always EROFS.
  ["SETATTR", 0, 0, erofs],
  ["SYMLINK", 0, 0, erofs],
  ["MKNOD", 0, 0, erofs],
  ["MKDIR", 0, 0, erofs],
  ["UNLINK", 0, 0, erofs],
  ["RMDIR", 0, 0, erofs],
  ["RENAME", 0, 0, erofs],
  ["LINK", 0, 0, erofs],
  ["WRITE", 0, 0, erofs],
  ["SETXATTR", 0, 0, erofs],
  ["REMOVEXATTR", 0, 0, erofs],
  ["CREATE", 0, 0, erofs],
  ["FALLOCATE", 0, 0, erofs],
  ["RENAME2", 0, 0, erofs],
  ["COPY_FILE_RANGE", 0, 0, erofs],
  ["TMPFILE", 0, 0, erofs],
];

function batchForget(s: ProtocolServer, r: Request): void {
  const count = r.v.getUint32(H + FuseBatchForgetIn.count, true);
  // A count past the request's end is cut to what is there.
  const fit = Math.floor((r.bodyLen - FuseBatchForgetIn.SIZE) / FuseForgetOne.SIZE);
  let off = H + FuseBatchForgetIn.SIZE;
  for (let i = 0; i < Math.min(count, fit); i++, off += FuseForgetOne.SIZE) {
    s.forget(getU64(r.v, off + FuseForgetOne.nodeid), getU64(r.v, off + FuseForgetOne.nlookup));
  }
}

const NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));

/** The opcode table, indexed by opcode; every opcode up to {@link Op.STATX} has a row. */
export const OPCODES: readonly Opcode[] = (() => {
  const rows: Opcode[] = [];
  for (let op = 0; op <= Op.STATX; op++) {
    rows.push({
      opcode: op,
      name: NAMES.get(op) ?? `OPCODE_${op}`,
      inSize: 0,
      names: 0,
      replies: true,
      handler: enosys,
    });
  }
  for (const [key, inSize, names, handler, replies] of ROWS) {
    rows[Op[key]] = {
      opcode: Op[key],
      name: key,
      inSize,
      names,
      replies: replies ?? true,
      handler,
    };
  }
  return rows;
})();

/** The name of an opcode, e.g. `LOOKUP`, or `OPCODE_n` when unknown. */
export function opName(opcode: number): string {
  return NAMES.get(opcode) ?? `OPCODE_${opcode}`;
}
