/**
 * Child process of {@link ./store.ts verifyInBackground}: the full check of an index file
 * (SQLite's quick_check and FTS5's integrity-check, seconds at a million tracks) outside the
 * daemon, so that neither its time nor its memory is the daemon's, and so that stopping it
 * early (SIGKILL at shutdown) releases its locks with the process.
 * `deno run --no-config --allow-read=<dir> --allow-write=<dir> verify_child.ts <path>` prints
 * one line of JSON: `{ "ok": true }` or `{ "ok": false, "reason": ..., "damaged": ... }`.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { checkIndexFile } from "./store.ts";

/** The line this child prints. */
export type VerifyAnswer = { ok: true } | { ok: false; reason: string; damaged: boolean };

/** Check the index file at `path`. */
export function verifyFile(path: string): VerifyAnswer {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path);
    db.exec("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -2000");
    checkIndexFile(db, false);
    return { ok: true };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return {
      ok: false,
      reason,
      damaged: /integrity|malformed|corrupt|not a database|word list differs|does not match/i.test(
        reason,
      ),
    };
  } finally {
    try {
      db?.close();
    } catch { /* closing anyway */ }
  }
}

if (import.meta.main) console.log(JSON.stringify(verifyFile(Deno.args[0])));
