import assert from "node:assert/strict";
import {
  type TaskChange,
  taskReportToJson,
  type TaskStatus,
  TaskSupervisor,
} from "./supervisor.ts";

/** Resolves once `pred` holds for the status of task `name` (polled: no timing involved). */
function waitFor(
  sup: TaskSupervisor,
  name: string,
  pred: (s: TaskStatus) => boolean,
): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      const s = sup.status(name);
      if (s && pred(s)) resolve();
      else setTimeout(check, 1);
    };
    check();
  });
}

/** A promise with its resolver exposed. */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

Deno.test("shutdown cancels background tasks", async () => {
  const sup = new TaskSupervisor();
  let stopped = false;
  let sawAbort = false;
  sup.spawnSupervised("watcher", async (signal) => {
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
    sawAbort = signal.aborted;
    stopped = true;
  });
  sup.spawnCritical(
    "committer",
    (signal) =>
      new Promise<void>((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason))
      ),
  );
  assert.equal(stopped, false);
  assert.deepEqual(sup.status("watcher"), { state: "running" });
  const stragglers = await sup.stopAll(5000);
  assert.deepEqual(stragglers, []);
  assert.equal(stopped, true);
  assert.equal(sawAbort, true);
  assert.deepEqual(sup.status("watcher"), { state: "stopped" });
  assert.deepEqual(sup.status("committer"), { state: "stopped" });
  assert.throws(() => sup.spawnSupervised("late", () => {}), /supervisor is stopping/);
});

Deno.test("supervisor detects task completion", async () => {
  const sup = new TaskSupervisor();
  sup.spawnSupervised("fast", async () => {});
  assert.deepEqual(await sup.done("fast"), { state: "stopped" });
  assert.deepEqual(sup.status("fast"), { state: "stopped" });
  assert.deepEqual(sup.checkAll(), [{
    name: "fast",
    critical: false,
    status: { state: "stopped" },
    restarts: 0,
  }]);
  assert.equal(sup.status("unknown"), undefined);
});

Deno.test("supervisor detects panic", async () => {
  const sup = new TaskSupervisor();
  sup.spawnSupervised("panicker", async () => {
    await Promise.resolve();
    throw new Error("boom");
  });
  // A synchronous throw is a failure too, not an exception escaping spawnSupervised.
  sup.spawnSupervised("sync-panicker", () => {
    throw new Error("sync boom");
  });
  const s = await sup.done("panicker");
  assert.equal(s.state, "failed");
  assert.equal(s.state === "failed" && s.error.message, "boom");
  assert.ok(s.state === "failed" && s.at instanceof Date);
  const s2 = await sup.done("sync-panicker");
  assert.equal(s2.state === "failed" && s2.error.message, "sync boom");
  const report = sup.checkAll().find((t) => t.name === "panicker")!;
  const json = JSON.parse(JSON.stringify(taskReportToJson(report)));
  assert.deepEqual(json, {
    name: "panicker",
    critical: false,
    state: "failed",
    restarts: 0,
    error: "boom",
    at: (s.state === "failed" && s.at.toISOString()) || "",
  });
});

Deno.test("supervisor restarts critical task", async () => {
  const changes: TaskChange[] = [];
  const sup = new TaskSupervisor({ onChange: (c) => changes.push(c) });
  let runs = 0;
  const secondRun = deferred();
  sup.spawnCritical("restartable", (signal) => {
    runs++;
    if (runs === 1) throw new Error("first run fails");
    secondRun.resolve();
    return new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
  }, { backoffMs: [40, 80] });
  await secondRun.promise;
  try {
    assert.equal(runs, 2);
    assert.deepEqual(sup.status("restartable"), { state: "running" });
    assert.deepEqual(
      changes.map((c) => [c.status.state, c.restarts]),
      [["running", 0], ["restarting", 0], ["running", 1]],
    );
    // The backoff of the schedule was applied before the restart.
    assert.deepEqual(changes[1].status, { state: "restarting", attempt: 1, delayMs: 40 });
    assert.equal(sup.checkAll()[0].restarts, 1);
  } finally {
    assert.deepEqual(await sup.stopAll(5000), []);
  }
  assert.deepEqual(sup.status("restartable"), { state: "stopped" });
});

Deno.test("supervisor holds a restart until its backoff has elapsed", async () => {
  const sleeps: { ms: number; wake: () => void }[] = [];
  const asleep = [deferred(), deferred()];
  const sup = new TaskSupervisor({
    sleep: (ms) =>
      new Promise<void>((wake) => {
        sleeps.push({ ms, wake });
        asleep[sleeps.length - 1]?.resolve();
      }),
  });
  let runs = 0;
  sup.spawnCritical("flaky", () => {
    runs++;
    if (runs <= 2) return Promise.reject(new Error(`run ${runs} fails`));
    return new Promise<void>(() => {});
  }, { backoffMs: [1000, 5000, 30000] });
  await asleep[0].promise;
  assert.equal(runs, 1);
  assert.deepEqual(sup.status("flaky"), { state: "restarting", attempt: 1, delayMs: 1000 });
  sleeps[0].wake();
  await asleep[1].promise;
  assert.equal(runs, 2);
  assert.deepEqual(sup.status("flaky"), { state: "restarting", attempt: 2, delayMs: 5000 });
  sleeps[1].wake();
  await waitFor(sup, "flaky", (s) => s.state === "running" && runs === 3);
  assert.deepEqual(sleeps.map((s) => s.ms), [1000, 5000]);
  assert.equal(sup.checkAll()[0].restarts, 2);
  // The third incarnation ignores its signal: it is what stopAll reports as a straggler.
  assert.deepEqual(await sup.stopAll(10), ["flaky"]);
});

Deno.test("critical task exceeding maxRestarts is failed and reported", async () => {
  const changes: TaskChange[] = [];
  const sup = new TaskSupervisor({ onChange: (c) => changes.push(c) });
  let runs = 0;
  sup.spawnCritical("doomed", () => {
    runs++;
    throw new Error(`failure ${runs}`);
  }, { backoffMs: [1, 2], maxRestarts: 3 });
  const final = await sup.done("doomed");
  assert.equal(runs, 4);
  assert.equal(final.state, "failed");
  assert.equal(final.state === "failed" && final.error.message, "failure 4");
  const [report] = sup.checkAll();
  assert.equal(report.status.state, "failed");
  assert.equal(report.restarts, 3);
  assert.deepEqual(
    changes.filter((c) => c.status.state === "restarting").map((c) =>
      c.status.state === "restarting" && c.status.delayMs
    ),
    [1, 2, 2],
  );
  assert.equal(changes.at(-1)?.status.state, "failed");
});

Deno.test("critical task that returns on its own is restarted", async () => {
  const sup = new TaskSupervisor();
  let runs = 0;
  const third = deferred();
  sup.spawnCritical("quitter", (signal) => {
    runs++;
    if (runs < 3) return;
    third.resolve();
    return new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
  }, { backoffMs: [1] });
  await third.promise;
  assert.deepEqual(sup.status("quitter"), { state: "running" });
  assert.equal(sup.checkAll()[0].restarts, 2);
  assert.deepEqual(await sup.stopAll(5000), []);
});

Deno.test("stopAll returns a task ignoring its signal as a straggler", async () => {
  const sup = new TaskSupervisor();
  const release = deferred();
  sup.spawnSupervised("stubborn", () => release.promise);
  sup.spawnSupervised(
    "polite",
    (signal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve())),
  );
  try {
    assert.deepEqual(await sup.stopAll(50), ["stubborn"]);
    assert.deepEqual(sup.status("polite"), { state: "stopped" });
    assert.deepEqual(sup.status("stubborn"), { state: "running" });
  } finally {
    release.resolve();
  }
  assert.deepEqual(await sup.done("stubborn"), { state: "stopped" });
});

Deno.test("stopAll interrupts a critical task waiting out its backoff", async () => {
  const sup = new TaskSupervisor();
  sup.spawnCritical("napping", () => {
    throw new Error("fails at once");
  }, { backoffMs: [60_000] });
  await waitFor(sup, "napping", (s) => s.state === "restarting");
  assert.deepEqual(await sup.stopAll(5000), []);
  assert.deepEqual(sup.status("napping"), { state: "stopped" });
});

Deno.test("supervisor refuses a second running task of the same name", async () => {
  const sup = new TaskSupervisor();
  sup.spawnSupervised(
    "dup",
    (signal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve())),
  );
  assert.throws(() => sup.spawnSupervised("dup", () => {}), /a task of that name is running/);
  assert.equal(await sup.stop("dup", 5000), true);
  sup.spawnSupervised("dup", () => {});
  assert.deepEqual(await sup.done("dup"), { state: "stopped" });
});

Deno.test("a failure after the abort is reported, not restarted", async () => {
  const sup = new TaskSupervisor();
  let runs = 0;
  sup.spawnCritical("bad-cleanup", (signal) => {
    runs++;
    return new Promise<void>((_, reject) =>
      signal.addEventListener("abort", () => reject(new Error("flush failed")))
    );
  }, { backoffMs: [1] });
  await sup.stopAll(5000);
  const s = sup.status("bad-cleanup");
  assert.equal(s?.state === "failed" && s.error.message, "flush failed");
  assert.equal(runs, 1);
});
