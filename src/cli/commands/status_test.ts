import assert from "node:assert/strict";
import { type ControlHandlers, controlSocketPath, serveControl } from "../../daemon/mod.ts";
import type { CommandIo } from "./common.ts";
import { rescanCommand } from "./rescan.ts";
import { type DaemonStatus, formatScan, formatStatus, statusCommand } from "./status.ts";

function capture(): { io: CommandIo; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l) => out.push(l), err: (l) => err.push(l) }, out, err };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cli-status-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CANNED: DaemonStatus = {
  pid: 4242,
  version: "0.1.0",
  mountpoint: "/home/me/MusicFS",
  startedAt: 1_700_000_000_000,
  uptimeMs: 2 * 3600_000 + 3 * 60_000,
  tracks: 12345,
  problems: 2,
  scan: {
    active: true,
    phase: "parsing",
    seen: 5000,
    unchanged: 1000,
    total: 4000,
    parsed: 1200,
    committed: 1000,
    walkDone: true,
  },
  tasks: [
    { name: "scanner", critical: true, state: "running", restarts: 0 },
    {
      name: "watcher",
      critical: false,
      state: "failed",
      error: "inotify limit reached",
      at: new Date(1_700_000_100_000).toISOString(),
      restarts: 0,
    },
    { name: "fuse", critical: true, state: "restarting", attempt: 2, restarts: 1 },
  ],
  origins: [
    { id: 1, path: "/music", healthy: true, consecutiveFailures: 0, watch: "watching" },
    {
      id: 2,
      path: "/mnt/nas/music",
      healthy: false,
      consecutiveFailures: 3,
      watch: "polling",
      reason: "inotify limit reached",
    },
  ],
  cache: { chunks: 120, bytes: 3 * 1024 ** 2, maxSize: 2 * 1024 ** 3, mode: "remote" },
  search: { state: "ready", documents: 12345 },
};

function cannedHandlers(calls: string[]): ControlHandlers {
  return {
    status: () => {
      calls.push("status");
      return CANNED;
    },
    search: () => Promise.resolve({ results: [] }),
    rescan: () => {
      calls.push("rescan");
      return Promise.resolve({ started: true });
    },
    shutdown: () => Promise.resolve(),
  };
}

Deno.test("status with no daemon: one-line error, exit 1", async () => {
  await withDir(async (dir) => {
    const c = capture();
    assert.equal(await statusCommand({ stateDir: dir, io: c.io }), 1);
    assert.deepEqual(c.out, []);
    assert.deepEqual(c.err, [
      "musicfs: musicfs is not running (start it with: musicfs mount <library>)",
    ]);
  });
});

Deno.test("rescan with no daemon: one-line error, exit 1", async () => {
  await withDir(async (dir) => {
    const c = capture();
    assert.equal(await rescanCommand({ stateDir: dir, io: c.io }), 1);
    assert.deepEqual(c.err, [
      "musicfs: musicfs is not running (start it with: musicfs mount <library>)",
    ]);
  });
});

Deno.test("status round trip: the daemon's status over its socket, as text and JSON", async () => {
  await withDir(async (dir) => {
    const calls: string[] = [];
    const server = await serveControl({
      socketPath: controlSocketPath(dir),
      handlers: cannedHandlers(calls),
    });
    try {
      const c = capture();
      assert.equal(await statusCommand({ stateDir: dir, io: c.io }), 0);
      assert.deepEqual(c.err, []);
      const text = c.out.join("\n");
      assert.match(c.out[0], /^musicfs 0\.1\.0 is running \(pid 4242\), up 2h 03m$/);
      assert.match(text, /^mountpoint +\/home\/me\/MusicFS$/m);
      assert.match(
        text,
        /^tracks +12,345 \(2 unreadable files: see \/home\/me\/MusicFS\/.musicfs\/problems.txt\)$/m,
      );
      assert.match(
        text,
        /^scan +parsing: 1,200 of 4,000 new or changed files read \(30%\), 1,000 unchanged$/m,
      );
      assert.match(text, /^search +ready \(12,345 documents\)$/m);
      assert.match(text, /^cache +120 chunks, 3\.0 MiB of 2\.0 GiB \(reads: remote\)$/m);
      assert.match(text, /^ {2}scanner +running +restarts 0, critical$/m);
      assert.match(text, /^ {2}watcher +failed: inotify limit reached at .+ +restarts 0$/m);
      assert.match(text, /^ {2}fuse +restarting \(attempt 2\) +restarts 1, critical$/m);
      assert.match(text, /^ {2}\/music +healthy, watching$/m);
      assert.match(
        text,
        /^ {2}\/mnt\/nas\/music +unhealthy \(3 failed probes\), polling for changes \(inotify limit reached\)$/m,
      );

      const j = capture();
      assert.equal(await statusCommand({ stateDir: dir, json: true, io: j.io }), 0);
      assert.deepEqual(JSON.parse(j.out.join("\n")), CANNED);
      assert.deepEqual(calls, ["status", "status"]);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("rescan round trip: POST /rescan starts a scan", async () => {
  await withDir(async (dir) => {
    const calls: string[] = [];
    const server = await serveControl({
      socketPath: controlSocketPath(dir),
      handlers: cannedHandlers(calls),
    });
    try {
      const c = capture();
      assert.equal(await rescanCommand({ stateDir: dir, io: c.io }), 0);
      assert.deepEqual(calls, ["rescan"]);
      assert.deepEqual(c.out, ["Rescan started (follow it with: musicfs status)"]);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("scan lines: counts of one kind, no missing percent for unreadable files", () => {
  const base = { active: true, unchanged: 0, committed: 0, seen: 0, total: 0, parsed: 0 };
  // Walking: the total is not known yet, so no percentage.
  assert.equal(
    formatScan({ ...base, phase: "walking", seen: 500, parsed: 120, walkDone: false }),
    "walking: 500 files found so far, 120 read",
  );
  // Done with one unreadable file of 62: no "98%" -- it is a problem, shown on the tracks line.
  const done = { ...base, active: false, phase: "done", seen: 62, total: 62, parsed: 62 };
  assert.equal(
    formatScan({ ...done, committed: 62, walkDone: true }),
    "done: 62 files, 62 new or changed files read",
  );
  const lines = formatStatus({ tracks: 61, problems: 1, mountpoint: "/m", scan: done }).join("\n");
  assert.match(lines, /^tracks +61 \(1 unreadable file: see \/m\/.musicfs\/problems.txt\)$/m);
  assert.doesNotMatch(lines, /%/);
});

Deno.test("status formatting tolerates missing fields and flat task reports", () => {
  const lines = formatStatus({
    pid: 1,
    startedAt: 1000,
    tasks: [{ name: "x", critical: false, state: "stopped", restarts: 2 } as never],
    cache: null,
    scan: null,
  }, 61_000);
  assert.equal(lines[0], "musicfs is running (pid 1), up 1m 00s");
  assert.ok(lines.includes("mountpoint  ?"));
  assert.ok(lines.includes("scan        idle"));
  assert.ok(lines.includes("cache       off"));
  assert.ok(lines.some((l) => /^ {2}x +stopped +restarts 2$/.test(l)), lines.join("\n"));
});

Deno.test("a daemon error answer is one line naming the request", async () => {
  await withDir(async (dir) => {
    const server = await serveControl({
      socketPath: controlSocketPath(dir),
      handlers: {
        ...cannedHandlers([]),
        rescan: () => Promise.reject(new Error("library root unreachable")),
      },
    });
    try {
      const c = capture();
      assert.equal(await rescanCommand({ stateDir: dir, io: c.io }), 1);
      assert.equal(c.err.length, 1);
      assert.match(
        c.err[0],
        /^musicfs: the daemon refused POST \/rescan: .*library root unreachable \(see the daemon's log\)$/,
      );
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("status escapes control characters in paths and reasons", () => {
  const lines = formatStatus({
    pid: 1,
    startedAt: 1000,
    mountpoint: "/mnt/music\nfake line",
    origins: [{
      id: 1,
      path: "/music/\x1b[2Jevil",
      healthy: false,
      consecutiveFailures: 1,
      watch: "polling",
      reason: "inotify\rlimit",
    }],
  }, 61_000);
  assert.ok(lines.every((l) => ![...l].some((c) => c < " ")), JSON.stringify(lines));
  assert.ok(lines.includes("mountpoint  /mnt/music\\nfake line"), lines.join("\n"));
  assert.ok(lines.some((l) => l.includes("/music/\\x1b[2Jevil") && l.includes("inotify\\rlimit")));
});
