/** The daemon's search committer task: periodic commits, and a last one at shutdown. */
import type { CommitResult } from "./search_index.ts";
import { abortableSleep } from "../util/mod.ts";

/** What the committer needs of an index ({@link SearchIndex} and {@link LazySearch} fit). */
export interface Committable {
  /** Changes not yet in the snapshot. */
  readonly dirty: boolean;
  /** Generation of the snapshot on disk; undefined when there is nothing to commit yet. */
  readonly generation: number | undefined;
  /** Write the snapshot stamped with `generation`. */
  commit(generation?: number): Promise<CommitResult | undefined>;
}

/** Options of {@link runCommitter}. */
export interface CommitterOptions {
  /** Time between two checks for changes, milliseconds. */
  intervalMs: number;
  /** Aborting stops the task after one last commit (the shutdown flush). */
  signal: AbortSignal;
  /**
   * The database generation whose changes the index holds now, stamped on each snapshot.
   * A generation change alone also triggers a commit, so the snapshot is never left stale.
   */
  generation?: () => number;
}

function needsCommit(index: Committable, generation: (() => number) | undefined): boolean {
  if (index.dirty) return true;
  return generation !== undefined && index.generation !== undefined &&
    generation() !== index.generation;
}

/**
 * Commit `index` every `intervalMs` when it changed, until `signal` aborts; then commit once
 * more and resolve, so a shutdown loses nothing indexed. Rejects when a commit fails (the
 * supervisor restarts the task; the previous snapshot stays valid meanwhile).
 */
export async function runCommitter(index: Committable, opts: CommitterOptions): Promise<void> {
  const interval = Math.max(1, opts.intervalMs);
  while (!opts.signal.aborted) {
    await abortableSleep(interval, opts.signal);
    if (opts.signal.aborted) break;
    if (needsCommit(index, opts.generation)) await index.commit(opts.generation?.());
  }
  if (needsCommit(index, opts.generation)) await index.commit(opts.generation?.());
}
