/**
 * `musicfs rescan`: asks the running daemon to rescan its libraries (POST /rescan).
 *
 * @module
 */
import { DaemonNotRunningError } from "../../daemon/mod.ts";
import {
  askDaemon,
  type CommandIo,
  consoleIo,
  type DaemonOptions,
  notRunningError,
  reportError,
} from "./common.ts";

/** Options of {@link rescanCommand}. */
export interface RescanOptions extends DaemonOptions {
  /** Where to print; default stdout/stderr. */
  io?: CommandIo;
}

/**
 * Starts a rescan in the daemon of `opts.stateDir` and returns at once (progress shows in
 * `musicfs status`). Resolves to the exit code: 0, or 1 when no daemon answers.
 */
export async function rescanCommand(opts: RescanOptions): Promise<number> {
  const io = opts.io ?? consoleIo;
  try {
    let answer: unknown;
    try {
      answer = await askDaemon(opts, "POST", "/rescan");
    } catch (e) {
      if (e instanceof DaemonNotRunningError) throw notRunningError();
      throw e;
    }
    const a = (answer ?? {}) as { started?: boolean; reason?: string };
    if (a.started === false) {
      // E.g. a scan already runs: the libraries are being read anyway, so this is no failure.
      io.out(`Rescan not started${a.reason ? `: ${a.reason}` : ""} (see: musicfs status)`);
    } else {
      io.out("Rescan started (follow it with: musicfs status)");
    }
    return 0;
  } catch (e) {
    return reportError(io, e, "see the daemon's log");
  }
}
