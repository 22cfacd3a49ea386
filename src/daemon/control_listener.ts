/**
 * The control API as part of the daemon: its first listener opens during the start (a daemon
 * nobody can reach, e.g. control.sock is a directory, must fail its start, not keep a mount
 * that `musicfs unmount` cannot stop); from then on a supervised task keeps one listening.
 */
import {
  type ControlHandlers,
  type ControlServer,
  controlSocketPath,
  serveControl,
} from "./control.ts";
import { DaemonStartError } from "./preflight.ts";
import type { TaskSupervisor } from "./supervisor.ts";

/** The control API's first listener, opened; {@link spawnControlApi} takes it over. */
export interface FirstListener {
  server: ControlServer | undefined;
  stop: AbortController;
}

/** Open the first listener on `<stateDir>/control.sock`; a failure is a failed start. */
export async function openControlListener(
  stateDir: string,
  handlers: ControlHandlers,
): Promise<FirstListener> {
  const stop = new AbortController();
  try {
    const server = await serveControl({
      socketPath: controlSocketPath(stateDir),
      signal: stop.signal,
      handlers,
    });
    return { server, stop };
  } catch (e) {
    throw new DaemonStartError((e as Error).message, { cause: e });
  }
}

/** Keep the control API listening: the first listener, then a new one after each loss. */
export function spawnControlApi(
  supervisor: TaskSupervisor,
  stateDir: string,
  handlers: ControlHandlers,
  first: FirstListener,
): void {
  supervisor.spawnCritical("control api", async (signal) => {
    let server = first.server;
    first.server = undefined;
    if (server) signal.addEventListener("abort", () => first.stop.abort(), { once: true });
    else {
      server = await serveControl({ socketPath: controlSocketPath(stateDir), signal, handlers });
    }
    await server.finished;
  }, {
    // Never given up on: it is how the user reaches the daemon. A listener lost (e.g. to
    // EMFILE) comes back within seconds.
    backoffMs: [200, 1000, 5000],
    maxRestarts: 1000,
  });
}
