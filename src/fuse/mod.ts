/**
 * The FUSE layer: our own implementation of the Linux FUSE kernel protocol over /dev/fuse.
 * It knows nothing about music; a filesystem implements {@link FuseOperations} and
 * {@link FuseSession.mount} serves it.
 */
export * from "./ops.ts";
export { FuseSession, type SessionOptions, type SessionStats } from "./session.ts";
export {
  type BackingFiles,
  type ProtocolOptions,
  ProtocolServer,
  type ProtocolStats,
  type ReplySink,
} from "./protocol_server.ts";
export { Op, type Opcode, OPCODES, opName } from "./opcodes.ts";
export {
  detach,
  findFuseMount,
  isDeadMount,
  MountError,
  type MountOptions,
  prepareMountpoint,
  probeMount,
} from "./mount.ts";
export {
  closeFd,
  identity,
  NETWORK_FS_MAGIC,
  openReadOnly,
  preadAsync,
  preadCached,
  preadSync,
  statfsType,
  SyscallError,
} from "../sys/libc.ts";
export { type MountInfo, mountOf, parseMountinfo, readMountinfo } from "../sys/mountinfo.ts";
export { type DemoFault, DemoFs } from "./demo_fs.ts";
export {
  AbortError,
  abortFuseMount,
  type AbortResult,
  connectionOf,
  FUSECTL_DIR,
  mountinfoPath,
} from "./abort.ts";
