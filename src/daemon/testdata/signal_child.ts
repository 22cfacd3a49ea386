/**
 * Child process of shutdown_test.ts, in one of three modes (first argument):
 * - `ordered`: a supervised task plus signal handlers whose shutdown runs ordered steps;
 * - `stuck`: a shutdown that never ends, to be cut short by a second signal;
 * - `crash`: crash guards against a stray exception and an unhandled rejection.
 * It prints one line per event for the parent to check.
 *
 * @module
 */
import { installCrashGuards, installSignalHandlers, runShutdown } from "../shutdown.ts";
import { TaskSupervisor } from "../supervisor.ts";

const encoder = new TextEncoder();
const out = (s: string): void => void Deno.stdout.writeSync(encoder.encode(s + "\n"));
// Signal listeners do not keep a Deno process alive; a daemon's mount loop does. This stands
// in for it (installSignalHandlers exits the process after the shutdown).
const keepAlive = () => setInterval(() => {}, 60_000);

switch (Deno.args[0]) {
  case "ordered": {
    const sup = new TaskSupervisor();
    sup.spawnSupervised("watcher", async (signal) => {
      await new Promise((resolve) => signal.addEventListener("abort", resolve));
      out("watcher saw abort");
    });
    installSignalHandlers({
      onRescan: () => out("rescan"),
      onShutdown: async () => {
        const report = await runShutdown([
          { name: "stop tasks", run: async () => out(`stragglers ${await sup.stopAll(5000)}`) },
          { name: "commit search", run: () => Promise.reject(new Error("disk full")) },
          { name: "close sqlite", run: () => out(`watcher ${sup.status("watcher")?.state}`) },
        ]);
        out(`report ${report.steps.map((s) => `${s.name}=${s.outcome}`).join(",")}`);
      },
    });
    keepAlive();
    out("ready");
    break;
  }
  case "stuck": {
    installSignalHandlers({
      onRescan: () => {},
      onShutdown: () => {
        out("stopping");
        return new Promise<void>(() => {});
      },
    });
    keepAlive();
    out("ready");
    break;
  }
  case "crash": {
    installCrashGuards({ onCrash: (e, kind) => out(`${kind}: ${(e as Error).message}`) });
    setTimeout(() => {
      throw new Error("stray exception");
    }, 0);
    setTimeout(() => void Promise.reject(new Error("stray rejection")), 5);
    setTimeout(() => out("alive"), 20);
    break;
  }
}
