/**
 * Mounting and unmounting a FUSE filesystem without libfuse: mount(2) on /dev/fuse as root,
 * the setuid fusermount3 helper (fd passed back over SCM_RIGHTS) otherwise. Also the checks a
 * user wants before a mount: the mountpoint exists, is an empty directory, and is not held by
 * a dead FUSE mount (detached) or a live one (refused).
 */
import {
  cstr,
  errno,
  identity,
  libc,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  SyscallError,
  u64,
} from "../sys/libc.ts";
import { type MountInfo, mountsAt } from "../sys/mountinfo.ts";
import { logger } from "../log/mod.ts";

export type { MountInfo };

const log = logger("fuse", "mount");

/** A mount that cannot be made, with a one-line reason and what to do. */
export class MountError extends Error {
  /** `message` is the one-line reason shown to the user. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MountError";
  }
}

/** How to mount. */
export interface MountOptions {
  /** Shown as the mount source in /proc/mounts. Default `musicfs`. */
  fsName?: string;
  /** Filesystem subtype: type becomes `fuse.<subtype>`. Default `musicfs`. */
  subtype?: string;
  /** Let other users see the mount (needs `user_allow_other` in /etc/fuse.conf as non-root). */
  allowOther?: boolean;
  /** Let the kernel check permissions from the mode bits. */
  defaultPermissions?: boolean;
  /** Create the mountpoint when missing. */
  create?: boolean;
  /** Force the fusermount3 helper even as root (tests). */
  useHelper?: boolean;
}

/** A mounted FUSE connection. */
export interface MountHandle {
  /** The /dev/fuse fd (nonblocking). */
  fd: number;
  /** Absolute mountpoint. */
  mountpoint: string;
  /** `kernel`: mount(2) as root; `helper`: fusermount3. */
  method: "kernel" | "helper";
  /** Our end of the socket the helper watches for auto_unmount (helper only). */
  commFd?: number;
}

const MS_RDONLY = 1;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MNT_DETACH = 2;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const EINVAL = 22;
const ENOENT = 2;

/** Every mount whose mountpoint is `path` (last one is the top of the stack). */
export function findMounts(path: string): MountInfo[] {
  return mountsAt(path);
}

/** The top mount at `path` when it is a FUSE mount. */
export function findFuseMount(path: string): MountInfo | undefined {
  const top = findMounts(path).at(-1);
  return top && (top.fstype === "fuse" || top.fstype.startsWith("fuse.")) ? top : undefined;
}

/**
 * The state of the FUSE mount at `path`: `dead` when a lookup in it fails with ENOTCONN or
 * ECONNABORTED (its daemon is gone or its connection was aborted), `hung` when the lookup does
 * not answer within `timeoutMs`, else `live`. The stat is async
 * with a bound because a sync one would hang us on a stopped daemon, or deadlock on our own.
 */
export async function probeMount(
  path: string,
  timeoutMs = 2000,
): Promise<"live" | "dead" | "hung"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"hung">((r) => (timer = setTimeout(() => r("hung"), timeoutMs)));
  // A name never looked up always reaches the daemon: with NO_OPENDIR_SUPPORT a listing (and a
  // stat) may be answered from the kernel's cache even on a dead connection.
  const fresh = `${path}/.musicfs-probe-${crypto.randomUUID()}`;
  const stat = (async () => {
    try {
      await Deno.lstat(fresh);
      return "live" as const;
    } catch (e) {
      // ECONNABORTED: the connection was aborted through /sys/fs/fuse/connections.
      const code = (e as { code?: string }).code;
      return code === "ENOTCONN" || code === "ECONNABORTED" ? "dead" as const : "live" as const;
    }
  })();
  try {
    return await Promise.race([stat, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `path` holds a FUSE mount whose daemon is gone (stat fails with ENOTCONN). */
export async function isDeadMount(path: string): Promise<boolean> {
  return (await probeMount(path)) === "dead";
}

/** Detach whatever is mounted at `path` (lazily); resolves false when nothing was mounted. */
export async function detach(path: string): Promise<boolean> {
  if (identity().root) {
    if (libc().umount2(cstr(path), MNT_DETACH) === 0) return true;
    const err = errno();
    if (err === EINVAL || err === ENOENT) return false;
    throw new SyscallError(`umount ${path}`, err);
  }
  const helper = findHelper();
  if (!helper) throw new MountError(`Cannot unmount ${path}: fusermount3 is not installed`);
  const out = await new Deno.Command(helper, {
    args: ["-u", "-z", "--", path],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.success) return true;
  const msg = new TextDecoder().decode(out.stderr).trim();
  if (/not mounted|not found in/.test(msg)) return false;
  throw new MountError(`Cannot unmount ${path}: ${msg || "fusermount3 failed"}`);
}

function findHelper(): string | undefined {
  for (
    const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").concat(["/usr/bin", "/bin"])
  ) {
    for (const name of ["fusermount3", "fusermount"]) {
      try {
        const p = `${dir}/${name}`;
        if (Deno.statSync(p).isFile) return p;
      } catch { /* not here */ }
    }
  }
  return undefined;
}

/**
 * Check `mountpoint` and clear a dead FUSE mount left on it. Throws {@link MountError} for a
 * missing path (unless `create`), a non-directory, a non-empty directory, or a live mount.
 * Returns the absolute path.
 */
export async function prepareMountpoint(mountpoint: string, create = false): Promise<string> {
  let abs = mountpoint.startsWith("/") ? mountpoint : `${Deno.cwd()}/${mountpoint}`;
  abs = abs.replace(/\/+$/, "") || "/";
  const fuse = findFuseMount(abs);
  if (fuse) {
    const state = await probeMount(abs);
    if (state === "dead") {
      log.warn("Detaching a dead FUSE mount left at {mountpoint}", { mountpoint: abs });
      await detach(abs);
    } else {
      const how = state === "hung"
        ? "a FUSE filesystem that does not answer"
        : `another FUSE filesystem (${fuse.fstype})`;
      throw new MountError(`Cannot mount at ${abs}: ${how} is mounted there (unmount it first)`);
    }
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(abs);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && create) {
      Deno.mkdirSync(abs, { recursive: true });
      info = Deno.statSync(abs);
    } else if (e instanceof Deno.errors.NotFound) {
      throw new MountError(`Cannot mount at ${abs}: no such directory (create it first)`);
    } else if (e instanceof Deno.errors.PermissionDenied) {
      throw new MountError(`Cannot mount at ${abs}: permission denied`);
    } else throw new MountError(`Cannot mount at ${abs}: ${(e as Error).message}`, { cause: e });
  }
  if (!info.isDirectory) {
    throw new MountError(`Cannot mount at ${abs}: not a directory (choose a directory)`);
  }
  const realAbs = Deno.realPathSync(abs);
  if (findMounts(realAbs).length > 0) {
    throw new MountError(
      `Cannot mount at ${abs}: a filesystem is already mounted there (unmount it first)`,
    );
  }
  let nonEmpty = false;
  try {
    for (const _ of Deno.readDirSync(realAbs)) {
      nonEmpty = true;
      break;
    }
  } catch (e) {
    throw new MountError(`Cannot mount at ${abs}: ${(e as Error).message}`, { cause: e });
  }
  if (nonEmpty) {
    throw new MountError(`Cannot mount at ${abs}: directory is not empty (use an empty directory)`);
  }
  return realAbs;
}

/**
 * Mount a FUSE filesystem at `mountpoint` (already checked by {@link prepareMountpoint}) and
 * return the /dev/fuse connection. The kernel's INIT request is waiting on it.
 */
export async function mountFuse(mountpoint: string, opts: MountOptions = {}): Promise<MountHandle> {
  try {
    Deno.statSync("/dev/fuse");
  } catch {
    throw new MountError(
      "Cannot mount: /dev/fuse is missing (load the fuse module: modprobe fuse)",
    );
  }
  const { uid, gid, root } = identity();
  const fsName = opts.fsName ?? "musicfs";
  const subtype = opts.subtype ?? "musicfs";
  if (root && !opts.useHelper) {
    const fd = libc().open(cstr("/dev/fuse"), O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) {
      throw new MountError(`Cannot open /dev/fuse: ${new SyscallError("open", errno()).message}`);
    }
    const data = [`fd=${fd}`, "rootmode=40000", `user_id=${uid}`, `group_id=${gid}`];
    if (opts.allowOther) data.push("allow_other");
    if (opts.defaultPermissions) data.push("default_permissions");
    const rc = libc().mount(
      cstr(fsName),
      cstr(mountpoint),
      cstr(`fuse.${subtype}`),
      u64(MS_RDONLY | MS_NOSUID | MS_NODEV),
      cstr(data.join(",")),
    );
    if (rc < 0) {
      const err = errno();
      libc().close(fd);
      throw new MountError(
        `Cannot mount at ${mountpoint}: ${new SyscallError("mount", err).message}`,
      );
    }
    return { fd, mountpoint, method: "kernel" };
  }
  return await mountWithHelper(mountpoint, fsName, subtype, opts);
}

async function mountWithHelper(
  mountpoint: string,
  fsName: string,
  subtype: string,
  opts: MountOptions,
): Promise<MountHandle> {
  const helper = findHelper();
  if (!helper) {
    throw new MountError("Cannot mount as a non-root user: fusermount3 is missing (install fuse3)");
  }
  const l = libc();
  const sv = new Int32Array(2);
  // AF_UNIX, SOCK_STREAM; no SOCK_CLOEXEC so the helper inherits sv[1].
  if (l.socketpair(1, 1, 0, new Uint8Array(sv.buffer)) < 0) {
    throw new SyscallError("socketpair", errno());
  }
  const [ours, theirs] = sv;
  // Our end must not leak into any child (the helper included): auto_unmount fires when the
  // last copy of it closes, i.e. when we die.
  l.fcntl(ours, F_SETFD, FD_CLOEXEC);
  const options = [
    "ro",
    "nosuid",
    "nodev",
    `fsname=${fsName}`,
    `subtype=${subtype}`,
    "auto_unmount",
  ];
  if (opts.allowOther) options.push("allow_other");
  if (opts.defaultPermissions) options.push("default_permissions");
  const child = new Deno.Command(helper, {
    args: ["-o", options.join(","), "--", mountpoint],
    env: { _FUSE_COMMFD: String(theirs) },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  l.close(theirs);
  // With auto_unmount the helper lives on to unmount after we die; do not wait for it.
  child.unref();
  const errText = (async () => {
    let text = "";
    const dec = new TextDecoder();
    for await (const c of child.stderr) text += dec.decode(c, { stream: true });
    return text.trim();
  })();
  const fd = await receiveFd(ours);
  if (fd < 0) {
    l.close(ours);
    const msg = (await errText).replace(/^fusermount3?: /, "");
    throw new MountError(`Cannot mount at ${mountpoint}: ${msg || "fusermount3 failed"}`);
  }
  errText.catch(() => {});
  const flags = l.fcntl(fd, 3, 0);
  l.fcntl(fd, 4, flags | O_NONBLOCK);
  // A child holding a copy of the device fd would keep a dead daemon's mount alive.
  l.fcntl(fd, F_SETFD, FD_CLOEXEC);
  return { fd, mountpoint, method: "helper", commFd: ours };
}

/** Receive one fd over SCM_RIGHTS; -1 on EOF (the helper failed). */
async function receiveFd(sock: number): Promise<number> {
  const data = new Uint8Array(1);
  const control = new Uint8Array(24);
  const iov = new BigUint64Array(2);
  iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data)));
  iov[1] = 1n;
  const msg = new BigUint64Array(7);
  msg[2] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(iov)));
  msg[3] = 1n;
  msg[4] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(control)));
  msg[5] = 24n;
  for (;;) {
    const n = await libc().recvmsg_nb(sock, new Uint8Array(msg.buffer), 0);
    if (n <= 0n) return -1;
    const v = new DataView(control.buffer);
    // cmsghdr: len u64, level i32 (SOL_SOCKET 1), type i32 (SCM_RIGHTS 1), data.
    if (v.getInt32(8, true) === 1 && v.getInt32(12, true) === 1) return v.getInt32(16, true);
    return -1;
  }
}

/** Unmount a handle's mount (lazily) and release the helper's watch socket. */
export async function unmountFuse(handle: MountHandle): Promise<void> {
  try {
    await detach(handle.mountpoint);
  } finally {
    if (handle.commFd !== undefined) {
      libc().close(handle.commFd);
      handle.commFd = undefined;
    }
  }
}
