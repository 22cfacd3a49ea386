/**
 * The worker of {@link ./bulk_writer.ts BulkWriter}: indexes batches of track changes into the
 * index file through a connection of its own, one SQLite transaction per batch, and answers each
 * with the counts the daemon's searching index takes over ({@link WriterState}). Turning tags
 * into terms and the FTS5 inserts are then off the daemon's main thread (a first scan sends
 * thousands of tracks a second).
 *
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import { type PackedValue, unpackChanges } from "./packed.ts";
import { SearchIndex, type WriterState } from "./search_index.ts";

/** A batch of changes ({@link PackedValue}s, see ./packed.ts) for the index at `path`. */
export interface IndexRequest {
  seq: number;
  path: string;
  changes: PackedValue[];
}

/** The answer to {@link IndexRequest} `seq`: committed, or not at all. */
export type IndexResponse =
  | ({ seq: number; ok: true } & WriterState)
  | { seq: number; ok: false; error: string };

let index: SearchIndex | undefined;

async function handle(req: IndexRequest): Promise<IndexResponse> {
  try {
    index ??= await SearchIndex.open(req.path, { wordDeltas: true });
    // The searching side may have written since the last batch (small changes, commits).
    index.reloadCounts();
    for (const [id, track] of unpackChanges(req.changes)) {
      if (track) index.indexFile(track);
      else index.remove(id);
    }
    await index.commit();
    return { seq: req.seq, ok: true, ...index.writerState() };
  } catch (e) {
    // The connection may hold a rolled-back state: the next batch starts from a fresh one.
    index?.close();
    index = undefined;
    return { seq: req.seq, ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

// One batch at a time, in the order sent.
let queue: Promise<unknown> = Promise.resolve();
self.onmessage = (e: MessageEvent<IndexRequest | "close">) => {
  const req = e.data;
  queue = queue.then(async () => {
    if (req === "close") {
      index?.close();
      index = undefined;
      self.close();
      return;
    }
    self.postMessage(await handle(req));
  });
};
