/**
 * A stand-in for ../index_worker.ts that fails, for the fallback tests of ../bulk_writer_test.ts:
 * loaded as `...?throw`, it throws (an uncaught worker error); else it answers with an error.
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
const throws = new URL(import.meta.url).search === "?throw";
self.onmessage = (e: MessageEvent<{ seq: number } | "close">) => {
  if (e.data === "close") return self.close();
  if (throws) throw new Error("worker crashed");
  self.postMessage({ seq: e.data.seq, ok: false, error: "disk on fire" });
};
