/**
 * Validation of the CAS index (an LMDB environment) in a child process.
 *
 * lmdb aborts (assertion), segfaults or dies of SIGBUS on some damaged files instead of
 * throwing, so the daemon must never open an index it has not seen survive a full walk in
 * another process first. {@link checkIndex} runs this module as a child
 * (`deno run -A index_check.ts <indexPath>`); the child walks every entry of every database,
 * checks the invariants the store relies on, prints one JSON line and exits 0 (healthy) or 3
 * (damaged). Any other exit, a signal or a timeout also counts as damaged.
 *
 * @module
 */
import { open } from "lmdb";

/** Bumped when the index layout changes; an index with another marker is rebuilt. */
export const INDEX_FORMAT = 1;
/** Named databases of the index environment. */
export const DB_NAMES = { meta: "meta", chunks: "chunks", files: "files" } as const;
/** `maxDbs` for every open of the environment (child and daemon must agree). */
export const MAX_DBS = 4;
/** Exit code of a child that walked the index and found it damaged. */
export const EXIT_DAMAGED = 3;

const HASH_RE = /^[0-9a-f]{64}$/;

/** What a healthy index holds, as counted by the walk. */
export interface IndexSummary {
  /** Entries of the `chunks` database (hash -> [size, last access]). */
  chunks: number;
  /** Sum of the chunk sizes recorded in the index. */
  bytes: number;
  /** Entries of the `files` database ((fileKey, chunkNo) -> hash). */
  files: number;
}

/** Outcome of {@link checkIndex}. */
export type IndexCheck =
  | ({ status: "ok"; ms: number } & IndexSummary)
  | { status: "absent" }
  | { status: "damaged"; reason: string; ms: number };

/** Options of {@link checkIndex}. */
export interface CheckIndexOptions {
  /** Kill the child and call the index damaged after this long. Default 10 000 ms. */
  timeoutMs?: number;
  /**
   * The command that runs the validator, the index path being appended. Default:
   * `[Deno.execPath(), "run", "-A", "--quiet", <this module>]`. A compiled binary, whose
   * execPath cannot `run` a module, passes its own hidden subcommand that calls
   * {@link validateIndexMain}.
   */
  command?: string[];
}

/**
 * Walk the environment at `indexPath` in a child process and report whether it is safe to
 * open in this one. Never opens the environment in the calling process.
 */
export async function checkIndex(
  indexPath: string,
  opts: CheckIndexOptions = {},
): Promise<IndexCheck> {
  // Synchronous up to the spawn, so the caller can work while the child walks.
  try {
    Deno.statSync(`${indexPath}/data.mdb`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { status: "absent" };
    // E.g. `index` is a file: ENOTDIR. Moving it aside and rebuilding is the way out.
    return { status: "damaged", reason: `cannot stat data.mdb: ${e}`, ms: 0 };
  }
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  const [cmd, ...args] = opts.command ?? [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    new URL(import.meta.url).href,
  ];
  const child = new Deno.Command(cmd, {
    args: [...args, indexPath],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited between the timeout firing and the kill.
    }
  }, opts.timeoutMs ?? 10_000);
  let out: Deno.CommandOutput;
  try {
    out = await child.output();
  } finally {
    clearTimeout(timer);
  }
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (timedOut) {
    return {
      status: "damaged",
      reason: `validation timed out after ${opts.timeoutMs ?? 10_000} ms`,
      ms: ms(),
    };
  }
  if (out.signal) {
    return {
      status: "damaged",
      reason: `validator crashed with ${out.signal}${tail(stderr)}`,
      ms: ms(),
    };
  }
  let report: Record<string, unknown> = {};
  try {
    report = JSON.parse(stdout.split("\n").pop() ?? "");
  } catch {
    // No report: the reason falls back to the exit code and stderr below.
  }
  if (out.code === 0 && typeof report.chunks === "number") {
    return {
      status: "ok",
      chunks: report.chunks,
      bytes: Number(report.bytes),
      files: Number(report.files),
      ms: ms(),
    };
  }
  const reason = out.code === EXIT_DAMAGED && typeof report.error === "string"
    ? report.error
    : `validator exited with code ${out.code}${tail(stderr)}`;
  return { status: "damaged", reason, ms: ms() };
}

function tail(stderr: string): string {
  if (!stderr) return "";
  const last = stderr.split("\n").slice(-2).join(" | ");
  return `: ${last.slice(-300)}`;
}

/**
 * Walk every entry of the index at `indexPath` (read-only) and check the invariants. Throws on
 * damage lmdb reports; lmdb may also kill the process, which is why only a child calls this.
 */
export function walkIndex(indexPath: string): IndexSummary {
  const env = open({ path: indexPath, maxDbs: MAX_DBS, readOnly: true });
  try {
    const meta = env.openDB({ name: DB_NAMES.meta });
    const chunks = env.openDB<[number, number], string>({ name: DB_NAMES.chunks });
    const files = env.openDB<string, [string, number]>({ name: DB_NAMES.files });
    const format = meta.get("format");
    if (format !== INDEX_FORMAT) {
      throw new Error(`format marker is ${JSON.stringify(format)}, expected ${INDEX_FORMAT}`);
    }
    let n = 0;
    let bytes = 0;
    let prev = "";
    for (const { key, value } of chunks.getRange()) {
      if (typeof key !== "string" || !HASH_RE.test(key)) {
        throw new Error(`bad chunk key ${JSON.stringify(key)}`);
      }
      if (key <= prev) throw new Error(`chunk keys out of order at ${key}`);
      prev = key;
      if (
        !Array.isArray(value) || value.length !== 2 || !Number.isSafeInteger(value[0]) ||
        value[0] < 0 || !Number.isFinite(value[1])
      ) {
        throw new Error(`bad chunk entry for ${key}: ${JSON.stringify(value)}`);
      }
      n++;
      bytes += value[0];
    }
    // A damaged branch page can end a walk early without any error; the count kept in the
    // database header catches that.
    const chunkCount = chunks.getStats() as { entryCount: number };
    if (n !== chunkCount.entryCount) {
      throw new Error(`walked ${n} chunk entries, header says ${chunkCount.entryCount}`);
    }
    let f = 0;
    for (const { key, value } of files.getRange()) {
      if (
        !Array.isArray(key) || key.length !== 2 || typeof key[0] !== "string" ||
        !Number.isSafeInteger(key[1]) || key[1] < 0
      ) {
        throw new Error(`bad file-chunk key ${JSON.stringify(key)}`);
      }
      if (typeof value !== "string" || !HASH_RE.test(value)) {
        throw new Error(`bad file-chunk entry for ${JSON.stringify(key)}`);
      }
      f++;
    }
    const fileCount = files.getStats() as { entryCount: number };
    if (f !== fileCount.entryCount) {
      throw new Error(`walked ${f} file-chunk entries, header says ${fileCount.entryCount}`);
    }
    return { chunks: n, bytes, files: f };
  } finally {
    env.close();
  }
}

/**
 * The child's entry point: walk the index, print one JSON line, return the exit code
 * (0 healthy, {@link EXIT_DAMAGED} damaged). For a compiled binary's hidden subcommand.
 */
export function validateIndexMain(indexPath: string): number {
  try {
    console.log(JSON.stringify(walkIndex(indexPath)));
    return 0;
  } catch (e) {
    console.log(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
    return EXIT_DAMAGED;
  }
}

if (import.meta.main) {
  Deno.exit(validateIndexMain(Deno.args[0]));
}
