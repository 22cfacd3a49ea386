/**
 * A parse worker of the {@link ParserPool} (pool.ts): reads the tags of the files it is sent, one
 * batch at a time, and answers as it goes (the pool's hang detection counts on that steady
 * progress). readTags never throws, so a broken file costs a result, never the
 * worker.
 */
import { adviseWillNeed } from "../sys/libc.ts";
import { shareTagMappers } from "./tag_mappers.ts";
import { readTags, type TagResult } from "./tags.ts";
import { diskWaits } from "./block_reader.ts";

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
// (a first scan) each worker would wait for the disk once per file, two requests at a time for
// the disk. So the heads (and tails, where ID3v1 and APE tags live) of the next `readAhead`
// (from the pool) files are asked for first with posix_fadvise(WILLNEED): the kernel reads them
// in the background, many at once, and the parser finds them in the page cache. Nothing is
// copied into this thread (the reads of a warm cache cost nothing twice), and each file costs
// one open on the thread pool (a hung mount pins a pool thread, never this one; FIFOs and
// symlinks swapped in are skipped). A failed hint costs nothing: the parser reads the file anyway.
//
// The hints cost ~25 µs of CPU per file (an open on the thread pool, the fadvise calls), for
// nothing when the files are cached already. So they adapt: while hinting, a probe file is left
// unhinted now and then; when PROBES_TO_STOP probes in a row were read without waiting for the
// disk (block_reader.ts counts the reads that did), hinting stops. While not hinting, the first
// read that waits starts it again. A probe that waited doubles the gap to the next one (up to
// PROBE_MAX), so a cold cache costs one unhinted file in hundreds.
let aheadMax = 0;
let hinting = true;
const PROBE_MIN = 64;
const PROBE_MAX = 1024;
const PROBES_TO_STOP = 8;
let probeGap = PROBE_MIN;
let untilProbe = PROBE_MIN;
let quietProbes = 0;
/** Files left unhinted on purpose, to be read as probes. */
const probes = new Set<string>();
/** Covers the parser's first 64 KiB block. */
const AHEAD_HEAD = 64 * 1024;
/** Covers the last two blocks (block-aligned reads of a trailing tag may span two). */
const AHEAD_TAIL = 128 * 1024;
/** Files to read ahead, in the order the parser will read them. */
const aheadQueue: string[] = [];
let aheadRunning = 0;

/**
 * The parser got to `path`: reading it ahead now would only repeat its read. Both go in the same
 * order, so it is at the head of the queue if it is still there.
 */
function markReached(path: string): void {
  if (aheadQueue[0] === path) aheadQueue.shift();
}

function pumpAhead(): void {
  while (hinting && aheadRunning < aheadMax && aheadQueue.length > 0) {
    const next = aheadQueue.shift()!;
    if (--untilProbe <= 0) {
      untilProbe = probeGap;
      probes.add(next);
      continue;
    }
    aheadRunning++;
    adviseWillNeed(next, AHEAD_HEAD, AHEAD_TAIL).catch(() => false).finally(() => {
      aheadRunning--;
      pumpAhead();
    });
  }
}

/** Whether hinting pays, from how the last file was read (see above). */
function learn(probe: boolean, waited: boolean): void {
  if (!hinting) {
    if (!waited) return;
    hinting = true;
    quietProbes = 0;
    untilProbe = probeGap = PROBE_MIN;
    pumpAhead();
  } else if (probe) {
    if (waited) {
      quietProbes = 0;
      probeGap = Math.min(PROBE_MAX, probeGap * 2);
    } else if (++quietProbes >= PROBES_TO_STOP) {
      hinting = false;
      probes.clear();
    }
  }
}

// One turn of the event loop (a message to ourselves: timers are clamped to a millisecond).
const turns = new MessageChannel();
let onTurn: (() => void) | undefined;
turns.port1.onmessage = () => onTurn?.();

function nextTurn(): Promise<void> {
  return new Promise((resolve) => {
    onTurn = resolve;
    turns.port2.postMessage(0);
  });
}

/** Batches being read; when 0, the worker waits for work since `idleSince`. */
let busy = 0;
let idleSince = performance.now();

// music-metadata's tag mappers, built once per thread instead of once per file; awaited before
// the first file (not here: messages arriving before `onmessage` is set would be lost).
const mappersShared = shareTagMappers();
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
  await mappersShared;
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
    // The parse below never gives the event loop a turn (its reads are synchronous): without
    // one here the read-ahead's opens would only be answered between batches.
    if (aheadRunning > 0) await nextTurn();
    const path = paths[index];
    markReached(path);
    const probe = probes.delete(path);
    const waits = diskWaits.count;
    results.push(await readTags(path));
    if (aheadMax > 0) learn(probe, diskWaits.count > waits);
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
