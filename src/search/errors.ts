/** Errors of the search index. Every snapshot problem is a {@link SearchSnapshotError}. */

/** What is wrong with a snapshot file. */
export type SnapshotProblem =
  | "missing"
  | "truncated"
  | "garbage"
  | "checksum"
  | "version"
  | "stale"
  | "unreadable";

/** A snapshot that cannot be used; `problem` says why. `openWithRecovery` rebuilds on these. */
export class SearchSnapshotError extends Error {
  /** Why the snapshot was refused. */
  readonly problem: SnapshotProblem;
  /** The snapshot file. */
  readonly path: string;
  /** The document count its header claims, when the header could be read. */
  readonly documentCount?: number;
  /** What is wrong, for people, without the path: e.g. `checksum mismatch`. */
  readonly reason: string;

  /** `reason` completes "Cannot open search snapshot: ...". */
  constructor(
    problem: SnapshotProblem,
    path: string,
    reason: string,
    opts: { cause?: unknown; documentCount?: number } = {},
  ) {
    super(`Cannot open search snapshot: ${reason} (${path})`, { cause: opts.cause });
    this.name = "SearchSnapshotError";
    this.problem = problem;
    this.path = path;
    this.documentCount = opts.documentCount;
    this.reason = reason;
  }
}

/** There is no snapshot file. */
export class SearchSnapshotMissingError extends SearchSnapshotError {
  /** See {@link SearchSnapshotError}. */
  constructor(path: string, opts: { cause?: unknown } = {}) {
    super("missing", path, "file not found", opts);
    this.name = "SearchSnapshotMissingError";
  }
}

/** The file is damaged: truncated, not a snapshot at all, or failing its checksum. */
export class SearchSnapshotCorruptError extends SearchSnapshotError {
  /** See {@link SearchSnapshotError}. */
  constructor(
    problem: "truncated" | "garbage" | "checksum" | "unreadable",
    path: string,
    reason: string,
    opts: { cause?: unknown; documentCount?: number } = {},
  ) {
    super(problem, path, reason, opts);
    this.name = "SearchSnapshotCorruptError";
  }
}

/** The snapshot was written by another format version. */
export class SearchSnapshotVersionError extends SearchSnapshotError {
  /** The version found in the file. */
  readonly found: number;
  /** The version this code reads. */
  readonly expected: number;

  /** See {@link SearchSnapshotError}. */
  constructor(
    path: string,
    found: number,
    expected: number,
    opts: { documentCount?: number } = {},
  ) {
    super("version", path, `format version ${found}, expected ${expected}`, opts);
    this.name = "SearchSnapshotVersionError";
    this.found = found;
    this.expected = expected;
  }
}

/** The snapshot is intact but reflects another database generation than the one expected. */
export class SearchSnapshotStaleError extends SearchSnapshotError {
  /** The generation recorded in the snapshot. */
  readonly found: number;
  /** The generation the caller expected. */
  readonly expected: number;

  /** See {@link SearchSnapshotError}. */
  constructor(
    path: string,
    found: number,
    expected: number,
    opts: { documentCount?: number } = {},
  ) {
    super("stale", path, `generation ${found}, expected ${expected}`, opts);
    this.name = "SearchSnapshotStaleError";
    this.found = found;
    this.expected = expected;
  }
}

/** A search asked of a {@link LazySearch} whose index is not loaded (yet, or at all). */
export class SearchNotReadyError extends Error {
  /** `loading`: still loading when the wait ran out; `failed`: the load failed (see `cause`). */
  readonly state: "loading" | "failed";

  /** `reason` completes "Search index is not ready: ...". */
  constructor(state: "loading" | "failed", reason: string, opts: { cause?: unknown } = {}) {
    super(`Search index is not ready: ${reason}`, { cause: opts.cause });
    this.name = "SearchNotReadyError";
    this.state = state;
  }
}

/** Writing a snapshot failed; the previous snapshot (if any) is untouched. */
export class SearchCommitError extends Error {
  /** The snapshot file that was being replaced. */
  readonly path: string;

  /** `reason` completes "Cannot commit search snapshot: ...". */
  constructor(path: string, reason: string, opts: { cause?: unknown } = {}) {
    super(`Cannot commit search snapshot: ${reason} (${path})`, { cause: opts.cause });
    this.name = "SearchCommitError";
    this.path = path;
  }
}
