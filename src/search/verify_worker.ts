/**
 * Worker of {@link ./store.ts verifyInBackground}: the full check of an index file (SQLite's
 * quick_check and FTS5's integrity-check, seconds at a million tracks) off the event loop.
 * Posts `{ ok: true }` or `{ ok: false, reason }`.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";

/** The message this worker posts back. */
export type VerifyAnswer = { ok: true } | { ok: false; reason: string; damaged: boolean };

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<{ path: string }>) => void) | null;
  postMessage(answer: VerifyAnswer): void;
};

scope.onmessage = (e) => {
  let answer: VerifyAnswer;
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(e.data.path);
    db.exec("PRAGMA busy_timeout = 10000");
    const rows = db.prepare("PRAGMA quick_check").all() as { quick_check: string }[];
    const bad = rows.map((r) => r.quick_check).filter((r) => r !== "ok");
    if (bad.length) throw new Error(`integrity check failed: ${bad.slice(0, 3).join("; ")}`);
    // Writes nothing, but runs as a write statement: in a transaction rolled back.
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec("INSERT INTO docs(docs, rank) VALUES ('integrity-check', 0)");
    } finally {
      db.exec("ROLLBACK");
    }
    answer = { ok: true };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    answer = {
      ok: false,
      reason,
      damaged: /integrity|malformed|corrupt|not a database/i.test(reason),
    };
  } finally {
    try {
      db?.close();
    } catch { /* closing anyway */ }
  }
  scope.postMessage(answer);
};
