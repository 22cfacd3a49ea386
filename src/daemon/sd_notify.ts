/**
 * The systemd notification protocol (sd_notify(3)): datagrams like `READY=1` sent to the unix
 * socket named by $NOTIFY_SOCKET. Deno has no stable unix datagram API, so the datagram goes
 * out through libc socket/sendto over FFI, which also reaches abstract sockets (`@name`).
 *
 * Every function is a no-op returning false when $NOTIFY_SOCKET is unset (not started by
 * systemd), and a failure to notify is logged, never thrown: systemd's bookkeeping must not
 * take the mount down.
 *
 * @module
 */
import { errno, libc, strerror } from "../sys/libc.ts";
import { logger } from "../log/mod.ts";
import { abortableSleep } from "../util/mod.ts";

const log = logger("daemon", "sd_notify");

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const SUN_PATH_MAX = 108;

type Lib = { symbols: ReturnType<typeof libc> };
let loaded: Lib | null | undefined;

function loadLibc(): Lib | null {
  if (loaded === undefined) {
    try {
      loaded = { symbols: libc() };
    } catch (e) {
      log.warn("Cannot notify systemd: {error}", { error: (e as Error).message });
      loaded = null;
    }
  }
  return loaded;
}

/** The current errno as text; read right after the failing call, before anything else runs. */
function lastError(_lib: Lib): string {
  return strerror(errno());
}

/**
 * `struct sockaddr_un` for `path`; a leading '@' names an abstract socket, whose address is a
 * NUL byte followed by the name, with a length that excludes any terminator.
 */
export function sockaddrUn(path: string): { addr: Uint8Array; len: number } {
  const abstract = path.startsWith("@");
  const name = new TextEncoder().encode(abstract ? path.slice(1) : path);
  if (name.length + 1 > SUN_PATH_MAX) {
    throw new RangeError(`Socket path is longer than ${SUN_PATH_MAX - 1} bytes: ${path}`);
  }
  const addr = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(name, abstract ? 3 : 2);
  return { addr, len: abstract ? 3 + name.length : 2 + name.length + 1 };
}

/**
 * Sends `state` (newline-separated `KEY=value` assignments) to systemd.
 * @returns true if the datagram was sent, false when not under systemd or sending failed
 */
export function notify(state: string): boolean {
  const socketPath = Deno.env.get("NOTIFY_SOCKET");
  if (!socketPath) return false;
  const lib = loadLibc();
  if (!lib) return false;
  let target;
  try {
    target = sockaddrUn(socketPath);
  } catch (e) {
    log.warn("Cannot notify systemd: {error}", { error: (e as Error).message });
    return false;
  }
  const fd = lib.symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    log.warn("Cannot notify systemd: socket: {error}", { error: lastError(lib) });
    return false;
  }
  try {
    const msg = new TextEncoder().encode(state);
    // Never block the event loop on a full receive queue: dropping a STATUS= is harmless.
    const sent = lib.symbols.sendto(
      fd,
      msg,
      BigInt(msg.length),
      MSG_DONTWAIT | MSG_NOSIGNAL,
      target.addr,
      target.len,
    );
    if (Number(sent) < 0) {
      log.warn("Cannot notify systemd at {socket}: {error}", {
        socket: socketPath,
        error: lastError(lib),
      });
      return false;
    }
    log.trace("Notified systemd: {state}", { state });
    return true;
  } finally {
    lib.symbols.close(fd);
  }
}

/** `READY=1`: startup is complete (send it once the mount answers). */
export function ready(): boolean {
  return notify("READY=1");
}

/** `STATUS=<text>`: one line shown by `systemctl status`. */
export function status(text: string): boolean {
  return notify(`STATUS=${text.replace(/[\r\n]+/g, " ")}`);
}

/** `STOPPING=1`: the ordered shutdown has begun. */
export function stopping(): boolean {
  return notify("STOPPING=1");
}

/** `WATCHDOG=1`: the daemon is alive. */
export function watchdog(): boolean {
  return notify("WATCHDOG=1");
}

/** `EXTEND_TIMEOUT_USEC=`: startup or shutdown needs `ms` more (e.g. a store rebuild). */
export function extendTimeout(ms: number): boolean {
  return notify(`EXTEND_TIMEOUT_USEC=${Math.max(0, Math.round(ms * 1000))}`);
}

/**
 * How often to send `WATCHDOG=1`: half of $WATCHDOG_USEC, in ms, or null when systemd set no
 * watchdog for this process ($WATCHDOG_PID, when present, must be our pid).
 */
export function watchdogIntervalMs(): number | null {
  const usec = Number(Deno.env.get("WATCHDOG_USEC"));
  if (!Number.isFinite(usec) || usec <= 0) return null;
  const pid = Deno.env.get("WATCHDOG_PID");
  if (pid && Number(pid) !== Deno.pid) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * Sends `WATCHDOG=1` at once and then every `intervalMs` (default {@link watchdogIntervalMs})
 * until `signal` aborts. Returns at once when there is no watchdog. Run it under the
 * supervisor with `spawnSupervised`: a stalled event loop stops the pings, and systemd then
 * restarts the daemon.
 */
export async function runWatchdog(
  signal: AbortSignal,
  options: { intervalMs?: number } = {},
): Promise<void> {
  const intervalMs = options.intervalMs ?? watchdogIntervalMs();
  if (intervalMs === null) return;
  log.debug("Pinging the systemd watchdog every {intervalMs} ms", { intervalMs });
  while (!signal.aborted) {
    watchdog();
    await abortableSleep(intervalMs, signal);
  }
}
