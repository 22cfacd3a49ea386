/**
 * The integrity of `library.db` beyond what SQLite's own checks see (issue 12).
 *
 * `PRAGMA quick_check` skips the comparison of every index with its table, so a flipped bit in
 * a stored path passes it: the daemon then served a source twice, lost tracks, or listed paths
 * that do not exist. {@link integrityProblems} runs the full `PRAGMA integrity_check` (about
 * 150 ms at 100k tracks, 27 MB, on the dev machine; quick_check takes 30 ms, so the full check
 * stays at startup, before the mount serves) plus the references no constraint enforces.
 * {@link trackProblems} checks the rows themselves (every source once, clean relative paths,
 * plausible sizes) over the tracks the daemon loads anyway. {@link checkSources} then
 * cross-checks the tracks against the files they name: the part that touches the library, so
 * it runs off the request loop, after the mount serves.
 *
 * Both the daemon (at start) and `musicfs check` use these functions.
 *
 * @module
 */
import type { DatabaseSync } from "node:sqlite";
import type { TrackRecord } from "./types.ts";

/** At most this many problems are listed (the first ones tell enough). */
const MAX_PROBLEMS = 10;

type Row = Record<string, unknown>;

/**
 * Everything wrong with the open connection `conn`, empty when sound: `PRAGMA integrity_check`
 * and the schema's own invariants. Only reads.
 */
export function integrityProblems(conn: DatabaseSync): string[] {
  const rows = conn.prepare(`PRAGMA integrity_check(${MAX_PROBLEMS})`).all() as Row[];
  const msgs = rows.map((r) => String(Object.values(r)[0]));
  if (!(msgs.length === 1 && msgs[0] === "ok")) return msgs;
  const problems: string[] = [];
  const tables = new Set(
    (conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as Row[]).map((r) =>
      String(r.name)
    ),
  );
  // A database from before the files table (an empty schema) has nothing more to check.
  if (!tables.has("files") || !tables.has("origins")) return problems;
  // A source listed twice cannot pass integrity_check (the unique index is compared with the
  // table); the rows' own sanity is trackProblems', done in JS over the rows the daemon loads
  // anyway (the same as SQL costs 60 ms more at 100k tracks).
  const orphans = conn.prepare(
    `SELECT id, origin_id FROM files WHERE origin_id NOT IN (SELECT id FROM origins)
     LIMIT ${MAX_PROBLEMS}`,
  ).all() as Row[];
  for (const o of orphans) {
    problems.push(`track ${o.id} belongs to origin ${o.origin_id}, which does not exist`);
  }
  const badOrigins = conn.prepare(
    `SELECT id, path FROM origins WHERE typeof(path) != 'text' OR path NOT GLOB '/*'
     LIMIT ${MAX_PROBLEMS}`,
  ).all() as Row[];
  for (const o of badOrigins) problems.push(`origin ${o.id} has no absolute path`);
  return problems.slice(0, MAX_PROBLEMS);
}

/**
 * The invariants of the stored tracks (loaded anyway at startup): every (origin, path) once;
 * paths relative, clean (no empty, `.` or `..` segment, no NUL) and under a known origin;
 * sizes and times plausible. Empty when sound.
 */
export function trackProblems(
  tracks: readonly TrackRecord[],
  originIds: ReadonlySet<number>,
): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const t of tracks) {
    if (problems.length >= MAX_PROBLEMS) break;
    const key = `${t.originId}\0${t.relPath}`;
    if (seen.has(key)) {
      problems.push(`source ${t.originId}:${quote(t.relPath)} is listed more than once`);
      continue;
    }
    seen.add(key);
    if (!originIds.has(t.originId)) {
      problems.push(`track ${t.id} belongs to origin ${t.originId}, which does not exist`);
    } else if (!cleanRelPath(t.relPath)) {
      problems.push(`track ${t.id} has a malformed path ${quote(t.relPath)}`);
    } else if (
      !Number.isSafeInteger(t.size) || t.size < 0 || !Number.isFinite(t.mtimeMs) ||
      typeof t.ext !== "string" || t.ext !== t.ext.toLowerCase()
    ) {
      problems.push(
        `track ${t.id} is malformed: size ${quote(t.size)}, mtime ${quote(t.mtimeMs)}, ` +
          `ext ${quote(t.ext)}`,
      );
    }
  }
  return problems;
}

function cleanRelPath(p: unknown): boolean {
  if (typeof p !== "string" || p === "" || p.includes("\0")) return false;
  for (const seg of p.split("/")) if (seg === "" || seg === "." || seg === "..") return false;
  return true;
}

/** A stored value as it appears in a problem line: JSON, control characters escaped. */
function quote(v: unknown): string {
  if (typeof v === "bigint") return String(v);
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** What {@link checkSources} found. */
export interface SourceCheck {
  /** Tracks whose source was stat'ed. */
  checked: number;
  /** Tracks whose source does not exist or is no regular file. */
  missing: TrackRecord[];
  /** Tracks not checked because their origin did not answer (counted, not judged). */
  skipped: number;
  /** Origins whose root did not answer within the bound; their tracks are skipped. */
  unreachable: number[];
  /** Wall time of the whole check. */
  ms: number;
}

/** Options of {@link checkSources}. */
export interface SourceCheckOptions {
  /** Stats in flight at once. Default 32. */
  concurrency?: number;
  /** Bound on each stat; a root that does not answer is skipped. Default 2000 ms. */
  timeoutMs?: number;
  /** Stops the check early (the result then covers what was checked). */
  signal?: AbortSignal;
}

/**
 * Cross-checks `tracks` against the files they name under `origins` (id -> root): each source
 * must exist and be a regular file. Runs on Deno's blocking threads, never on the caller's
 * loop; a root that does not answer within `timeoutMs` is skipped whole (a dead share is the
 * health monitor's business, not damage), so this never hangs.
 */
export async function checkSources(
  tracks: readonly TrackRecord[],
  origins: ReadonlyMap<number, string>,
  opts: SourceCheckOptions = {},
): Promise<SourceCheck> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? 2000;
  const unreachable = new Set<number>();
  for (const [id, root] of origins) {
    const st = await bounded(Deno.stat(root), timeoutMs);
    if (st === "timeout" || st instanceof Error || !st.isDirectory) unreachable.add(id);
  }
  const result: SourceCheck = { checked: 0, missing: [], skipped: 0, unreachable: [], ms: 0 };
  let next = 0;
  const worker = async () => {
    while (next < tracks.length && !opts.signal?.aborted) {
      const t = tracks[next++];
      const root = origins.get(t.originId);
      if (root === undefined) continue; // not served: the daemon filters other origins out
      if (unreachable.has(t.originId)) {
        result.skipped++;
        continue;
      }
      const st = await bounded(Deno.stat(`${root}/${t.relPath}`), timeoutMs);
      if (st === "timeout") {
        unreachable.add(t.originId);
        result.skipped++;
        continue;
      }
      result.checked++;
      if (st instanceof Error ? st instanceof Deno.errors.NotFound || isNotDir(st) : !st.isFile) {
        result.missing.push(t);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 32 }, worker));
  result.unreachable = [...unreachable];
  result.ms = Math.round(performance.now() - started);
  return result;
}

function isNotDir(e: Error): boolean {
  return (e as { code?: string }).code === "ENOTDIR" || /ENOTDIR|Not a directory/.test(e.message);
}

/** `p`'s value or error, or "timeout" after `ms` (the call is abandoned, not cancelled). */
async function bounded<T>(p: Promise<T>, ms: number): Promise<T | Error | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  try {
    return await Promise.race([p.catch((e) => e instanceof Error ? e : new Error(String(e))), t]);
  } finally {
    clearTimeout(timer);
  }
}
