import assert from "node:assert/strict";
import {
  extendTimeout,
  notify,
  ready,
  runWatchdog,
  sockaddrUn,
  status,
  stopping,
  watchdog,
  watchdogIntervalMs,
} from "./sd_notify.ts";

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
});

/** A real unix datagram socket standing in for systemd's notification socket. */
class Receiver {
  readonly fd: number;
  constructor(readonly path: string) {
    this.fd = libc.symbols.socket(1, 2 | 0o2000000, 0);
    assert.ok(this.fd >= 0);
    const { addr, len } = sockaddrUn(path);
    assert.equal(libc.symbols.bind(this.fd, addr, len), 0, `bind ${path}`);
  }
  /** Every datagram queued now, oldest first. */
  drain(): string[] {
    const out = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = Number(libc.symbols.recv(this.fd, buf, BigInt(buf.length), 0x40));
      if (n < 0) return out;
      out.push(new TextDecoder().decode(buf.subarray(0, n)));
    }
  }
  close() {
    libc.symbols.close(this.fd);
  }
}

/** Runs `fn` with environment variables set, restoring them afterwards. */
async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void> | void) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) Deno.env.delete(k);
      else Deno.env.set(k, val);
    }
  };
  apply(vars);
  try {
    await fn();
  } finally {
    apply(saved);
  }
}

Deno.test("sd_notify messages arrive in order on a real datagram socket", async () => {
  const dir = await Deno.makeTempDir();
  const receiver = new Receiver(`${dir}/notify.sock`);
  try {
    await withEnv({ NOTIFY_SOCKET: receiver.path }, () => {
      assert.equal(status("Checking stores"), true);
      assert.equal(ready(), true);
      assert.equal(status("Scanning: 10/100\nfiles"), true);
      assert.equal(watchdog(), true);
      assert.equal(extendTimeout(2.5), true);
      assert.equal(stopping(), true);
    });
    assert.deepEqual(receiver.drain(), [
      "STATUS=Checking stores",
      "READY=1",
      "STATUS=Scanning: 10/100 files",
      "WATCHDOG=1",
      "EXTEND_TIMEOUT_USEC=2500",
      "STOPPING=1",
    ]);
  } finally {
    receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sd_notify reaches an abstract socket", async () => {
  const receiver = new Receiver(`@musicfs-test-${Deno.pid}-${crypto.randomUUID()}`);
  try {
    await withEnv({ NOTIFY_SOCKET: receiver.path }, () => {
      assert.equal(ready(), true);
      assert.equal(notify("STATUS=a\nMAINPID=1"), true);
    });
    assert.deepEqual(receiver.drain(), ["READY=1", "STATUS=a\nMAINPID=1"]);
  } finally {
    receiver.close();
  }
});

Deno.test("sd_notify is a no-op without NOTIFY_SOCKET and survives a missing socket", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withEnv({ NOTIFY_SOCKET: undefined }, () => {
      assert.equal(ready(), false);
    });
    await withEnv({ NOTIFY_SOCKET: `${dir}/nobody-listens.sock` }, () => {
      assert.equal(ready(), false);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchdog interval is half of WATCHDOG_USEC and only for our pid", async () => {
  await withEnv({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: undefined }, () => {
    assert.equal(watchdogIntervalMs(), 15000);
  });
  await withEnv({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: String(Deno.pid) }, () => {
    assert.equal(watchdogIntervalMs(), 15000);
  });
  await withEnv({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "1" }, () => {
    assert.equal(watchdogIntervalMs(), null);
  });
  await withEnv({ WATCHDOG_USEC: undefined, WATCHDOG_PID: undefined }, async () => {
    assert.equal(watchdogIntervalMs(), null);
    // Without a watchdog the pinger has nothing to do and ends.
    await runWatchdog(new AbortController().signal);
  });
});

Deno.test("watchdog pinger sends WATCHDOG=1 repeatedly until aborted", async () => {
  const dir = await Deno.makeTempDir();
  const receiver = new Receiver(`${dir}/notify.sock`);
  const controller = new AbortController();
  try {
    await withEnv({ NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: "4000" }, async () => {
      const pinger = runWatchdog(controller.signal);
      const got: string[] = [];
      while (got.length < 3) {
        await new Promise((r) => setTimeout(r, 1));
        got.push(...receiver.drain());
      }
      controller.abort();
      await pinger;
      got.push(...receiver.drain());
      assert.ok(got.length >= 3);
      assert.ok(got.every((m) => m === "WATCHDOG=1"), got.join(","));
      // Nothing more after the abort.
      await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(receiver.drain(), []);
    });
  } finally {
    controller.abort();
    receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});
