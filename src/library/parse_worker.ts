/**
 * A parse worker of the {@link ParserPool} (pool.ts): reads the tags of the files it is sent, one
 * batch at a time, and answers as it goes (the pool's hang detection counts on that steady
 * progress). readTags never throws, so a broken file costs a result, never the
 * worker.
 */
import { open } from "node:fs/promises";
import { constants } from "node:fs";
import { readTags, type TagResult } from "./tags.ts";

/** A batch of files to parse. */
export interface ParseRequest {
  id: number;
  paths: string[];
  /** Files read ahead at once (0: none; each holds an fd while it reads). */
  readAhead: number;
}

/**
 * The results for files `from`, `from + 1`... of the {@link ParseRequest} `id`; or, once at
 * start, `ready` (module loading is not parsing: the pool's hang watchdog starts after it).
 */
export type ParseResponse =
  | {
    id: number;
    from: number;
    results: TagResult[];
    /** ms spent reading them. */
    ms: number;
    /** ms the worker sat without work before this batch (in the batch's first answer). */
    idleMs: number;
  }
  | { ready: true };

// Answers go in small groups: one message per file costs ~20% of the scan rate, and a group
// still reports progress far more often than the pool's hang watchdog needs.
const GROUP = 16;
const GROUP_MS = 50;

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ParseRequest>) => void) | null;
  postMessage(m: ParseResponse): void;
};

// Read-ahead. readTags reads synchronously, one file after the other, so on a cold page cache
// (a first scan) each worker waits for the disk once per file and the disk sees two requests at
// a time. The heads (and tails, where ID3v1 and APE tags live) of the next files are read here
// first, asynchronously and `readAhead` (from the pool) at once on the runtime's I/O threads, so
// the parser finds them in the page cache: a cold 2-worker pool went from 2,400 to 3,500 files/s
// (same run; warm: unchanged). Opens
// are O_NONBLOCK|O_NOFOLLOW: a file swapped for a FIFO or a symlink since the walk is skipped,
// never waited on (the parser itself reports it). A failed read-ahead costs nothing: the parser
// reads the file anyway.
let aheadMax = 0;
const AHEAD_BYTES = 64 * 1024;
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW;
/** Files to read ahead, in the order the parser will read them. */
const aheadQueue: string[] = [];
const aheadBuffers: Uint8Array[] = [];
let aheadRunning = 0;

async function readAhead(path: string): Promise<void> {
  const buf = aheadBuffers.pop() ?? new Uint8Array(AHEAD_BYTES);
  const h = await open(path, OPEN_FLAGS).catch(() => undefined);
  try {
    if (!h) return;
    const { bytesRead } = await h.read(buf, 0, AHEAD_BYTES, 0);
    if (bytesRead === AHEAD_BYTES) {
      const size = (await h.stat()).size;
      if (size > AHEAD_BYTES) {
        await h.read(buf, 0, AHEAD_BYTES, Math.max(AHEAD_BYTES, size - AHEAD_BYTES));
      }
    }
  } catch {
    /* the parser will say what is wrong */
  } finally {
    aheadBuffers.push(buf);
    await h?.close().catch(() => {});
  }
}

/**
 * The parser got to `path`: reading it ahead now would only repeat its read. Both go in the same
 * order, so it is at the head of the queue if it is still there.
 */
function markReached(path: string): void {
  if (aheadQueue[0] === path) aheadQueue.shift();
}

function pumpAhead(): void {
  while (aheadRunning < aheadMax && aheadQueue.length > 0) {
    const next = aheadQueue.shift()!;
    aheadRunning++;
    readAhead(next).finally(() => {
      aheadRunning--;
      pumpAhead();
    });
  }
}

/** Batches being read; when 0, the worker waits for work since `idleSince`. */
let busy = 0;
let idleSince = performance.now();

scope.postMessage({ ready: true });

// Batches are read one after the other, in the order they came: the pool counts on it (the
// first unanswered file of a dead worker is the one that killed it). An async handler alone
// would interleave them whenever a read yields to the event loop (the read-ahead does).
const batches: { req: ParseRequest; idleMs: number }[] = [];
let draining = false;

scope.onmessage = (e) => {
  batches.push({ req: e.data, idleMs: busy === 0 ? performance.now() - idleSince : 0 });
  busy++;
  aheadMax = e.data.readAhead;
  if (aheadMax > 0) {
    aheadQueue.push(...e.data.paths);
    pumpAhead();
  }
  if (!draining) void drain();
};

async function drain(): Promise<void> {
  draining = true;
  while (batches.length > 0) {
    const { req, idleMs } = batches.shift()!;
    await readBatch(req, idleMs);
    if (--busy === 0) idleSince = performance.now();
  }
  draining = false;
}

async function readBatch({ id, paths }: ParseRequest, idleMs: number): Promise<void> {
  let from = 0;
  let results: TagResult[] = [];
  let since = performance.now();
  for (let index = 0; index < paths.length; index++) {
    markReached(paths[index]);
    results.push(await readTags(paths[index]));
    const now = performance.now();
    if (results.length >= GROUP || index === paths.length - 1 || now - since >= GROUP_MS) {
      scope.postMessage({ id, from, results, ms: now - since, idleMs });
      idleMs = 0;
      from = index + 1;
      results = [];
      since = performance.now();
    }
  }
}
