/**
 * The search index file: an SQLite database of its own (never library.db, so damage stays
 * apart), holding an FTS5 table of the track documents and a few stamped values.
 *
 * ```
 * PRAGMA application_id = 0x4d465353 ("MFSS"), user_version = SEARCH_FORMAT_VERSION
 * meta(key, value)   format, generation (of library.db), documents, and per field the words
 *                    and the documents holding it (`words0`.., `holders0`..: average field
 *                    lengths for the ranking, see ./query.ts)
 * docs               FTS5, one column per field of ./text.ts, holding the terms of ./text.ts
 *                    joined by spaces (the `ascii` tokenizer: every non-ASCII character is a
 *                    word character, so it keeps those terms exactly), prefix indexes of 2 and 3
 *                    characters, column detail (for `{title artist}:` filters), no column sizes
 * words              each word and how many documents hold it, kept with the documents in each
 *                    commit: the word list loaded for typo lookups and the ranking (a plain
 *                    table read, where fts5vocab walks every posting list: 0.8 s at a million
 *                    tracks)
 * vocab              fts5vocab rows of docs: the same counts, derived (the full check compares)
 * ```
 * Commits are SQLite transactions in WAL mode: a crash keeps the last committed state, and the
 * generation is committed with the documents it describes. Opening checks, cheaply: the SQLite
 * header and size (truncation), the application id and format version, the schema, the stamped
 * document count against the FTS5 row count, and a probe of the FTS5 structure; `verify` adds
 * SQLite's page-level `quick_check` and FTS5's own `integrity-check` (O(file), for `musicfs
 * check`). Damage found later, by a query or a write, surfaces as {@link isCorruption} errors.
 */
import { DatabaseSync } from "node:sqlite";
import {
  SearchSnapshotCorruptError,
  SearchSnapshotError,
  SearchSnapshotMissingError,
  SearchSnapshotStaleError,
  SearchSnapshotVersionError,
} from "./errors.ts";
import { FIELDS } from "./text.ts";

/** Bump whenever the schema, the fields or the text processing of ./text.ts change. */
export const SEARCH_FORMAT_VERSION = 3;
/** "MFSS": marks the file as a musicfs search index. */
const APPLICATION_ID = 0x4d465353;
const SQLITE_MAGIC = "SQLite format 3\0";

/** What the stamped values of an index file say. */
export interface StoreHeader {
  /** Words in each field over all documents (FIELDS order), for average field lengths. */
  fieldWords?: number[];
  /** Documents with each field (FIELDS order). */
  fieldHolders?: number[];
  /** Format version (SEARCH_FORMAT_VERSION). */
  version: number;
  /** Documents in the index. */
  documentCount: number;
  /** The database generation the index reflects. */
  generation: number;
  /** Size of the file (and its WAL) in bytes. */
  bodySize: number;
}

const SCHEMA = `
  PRAGMA application_id = ${APPLICATION_ID};
  PRAGMA user_version = ${SEARCH_FORMAT_VERSION};
  CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  INSERT INTO meta VALUES ('format', ${SEARCH_FORMAT_VERSION}), ('generation', 0),
    ('documents', 0), ${FIELDS.map((_, i) => `('words${i}', 0), ('holders${i}', 0)`).join(", ")};
  CREATE VIRTUAL TABLE docs USING fts5(${FIELDS.join(", ")}, tokenize = 'ascii',
    prefix = '2 3', detail = column, columnsize = 0);
  CREATE VIRTUAL TABLE vocab USING fts5vocab(docs, 'row');
  CREATE TABLE words(term TEXT PRIMARY KEY, doc INTEGER NOT NULL) WITHOUT ROWID;
`;

/** A new, empty index database in memory (it reaches its file by {@link writeCopy}). */
export function createMemoryStore(): DatabaseSync {
  const db = new DatabaseSync(":memory:");
  db.exec(SCHEMA);
  return db;
}

/** Settings of a connection to an index file. */
export function configure(db: DatabaseSync, readOnly: boolean): void {
  // NORMAL in WAL mode: a commit survives a crash of the process; a power loss may lose the
  // last commits, which the generation stamp then reports as stale.
  if (!readOnly) db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");
  // 2 MB of page cache; the OS page cache holds the rest of the file (more measured no faster).
  db.exec("PRAGMA cache_size = -2000; PRAGMA temp_store = MEMORY; PRAGMA busy_timeout = 2000");
}

/** True for SQLite errors that mean a damaged file. */
export function isCorruption(e: unknown): boolean {
  const m = e instanceof Error ? e.message : String(e);
  return /malformed|not a database|corrupt|SQLITE_CORRUPT|SQLITE_NOTADB/i.test(m);
}

/** Read the stamped values of an open index database. */
export function readHeader(db: DatabaseSync, bodySize = 0): StoreHeader {
  const rows = db.prepare("SELECT key, value FROM meta").all() as { key: string; value: number }[];
  const meta = new Map(rows.map((r) => [r.key, Number(r.value)]));
  return {
    version: meta.get("format") ?? -1,
    documentCount: meta.get("documents") ?? -1,
    generation: meta.get("generation") ?? -1,
    bodySize,
    fieldWords: FIELDS.map((_, i) => meta.get(`words${i}`) ?? 0),
    fieldHolders: FIELDS.map((_, i) => meta.get(`holders${i}`) ?? 0),
  };
}

function fileSize(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * Open the index file at `path` and check it (see the module doc). Throws a
 * {@link SearchSnapshotError} subclass on any problem; the connection is closed then.
 */
export function openStore(
  path: string,
  opts: { readOnly: boolean; generation?: number },
): { db: DatabaseSync; header: StoreHeader } {
  let stat: Deno.FileInfo;
  try {
    stat = Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new SearchSnapshotMissingError(path, { cause: e });
    throw new SearchSnapshotCorruptError("unreadable", path, `cannot read: ${message(e)}`, {
      cause: e,
    });
  }
  if (!stat.isFile) {
    throw new SearchSnapshotCorruptError("unreadable", path, "not a regular file");
  }
  checkFileHeader(path, stat.size);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: opts.readOnly });
  } catch (e) {
    throw new SearchSnapshotCorruptError("unreadable", path, `cannot open: ${message(e)}`, {
      cause: e,
    });
  }
  try {
    configure(db, opts.readOnly);
    const header = checkContents(db, path, stat.size + fileSize(`${path}-wal`));
    if (opts.generation !== undefined && header.generation !== opts.generation) {
      throw new SearchSnapshotStaleError(path, header.generation, opts.generation, {
        documentCount: header.documentCount,
      });
    }
    return { db, header };
  } catch (e) {
    db.close();
    if (e instanceof SearchSnapshotError) throw e;
    throw new SearchSnapshotCorruptError(
      isCorruption(e) ? "checksum" : "garbage",
      path,
      message(e),
      { cause: e },
    );
  }
}

/** The SQLite header: magic, and a size that covers every page it claims. */
function checkFileHeader(path: string, size: number): void {
  if (size === 0) throw new SearchSnapshotCorruptError("truncated", path, "empty file");
  const head = new Uint8Array(100);
  const f = Deno.openSync(path, { read: true });
  let got = 0;
  try {
    while (got < head.length) {
      const n = f.readSync(head.subarray(got));
      if (n === null) break;
      got += n;
    }
  } finally {
    f.close();
  }
  const magic = new TextDecoder().decode(head.subarray(0, 16));
  if (!SQLITE_MAGIC.startsWith(magic.slice(0, Math.min(got, 16)))) {
    throw new SearchSnapshotCorruptError("garbage", path, "not a search index (bad magic)");
  }
  if (got < 100) throw new SearchSnapshotCorruptError("truncated", path, "truncated header");
  const view = new DataView(head.buffer);
  const raw = view.getUint16(16);
  const pageSize = raw === 1 ? 65536 : raw;
  if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) {
    throw new SearchSnapshotCorruptError("garbage", path, "bad page size");
  }
  if (view.getUint32(68) !== APPLICATION_ID) {
    throw new SearchSnapshotCorruptError("garbage", path, "not a search index (application id)");
  }
  // The page count in the header is valid when its change counter matches (SQLite >= 3.7.0);
  // pages committed to the WAL but not yet copied back may lie beyond the end of the file.
  const pages = view.getUint32(28);
  const valid = view.getUint32(24) === view.getUint32(92);
  if (valid && pages * pageSize > size && fileSize(`${path}-wal`) === 0) {
    throw new SearchSnapshotCorruptError(
      "truncated",
      path,
      `truncated file (${size} of ${pages * pageSize} bytes)`,
    );
  }
  if (size % pageSize !== 0) {
    throw new SearchSnapshotCorruptError("garbage", path, "size is not a whole number of pages");
  }
}

function checkContents(db: DatabaseSync, path: string, bodySize: number): StoreHeader {
  const version = Number(
    (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
  );
  let header: StoreHeader | undefined;
  try {
    header = readHeader(db, bodySize);
  } catch (e) {
    // No meta table is reported by version below, or as garbage; a damaged one as damage.
    if (isCorruption(e)) throw e;
  }
  if (version !== SEARCH_FORMAT_VERSION) {
    throw new SearchSnapshotVersionError(path, version, SEARCH_FORMAT_VERSION, {
      documentCount: header && header.documentCount >= 0 ? header.documentCount : undefined,
    });
  }
  if (!header || header.version !== SEARCH_FORMAT_VERSION || header.generation < 0) {
    throw new SearchSnapshotCorruptError("garbage", path, "stamped values missing");
  }
  const claimed = { documentCount: header.documentCount };
  // FTS5's own row count (its "averages" record), O(1); the full check counts the rows too.
  const rows = fts5RowCount(db);
  if (rows !== header.documentCount) {
    throw new SearchSnapshotCorruptError(
      "checksum",
      path,
      `document count ${header.documentCount} does not match the index (${rows})`,
      claimed,
    );
  }
  // Reads the FTS5 structure record and one doclist: a damaged structure fails here.
  db.prepare("SELECT rowid FROM docs WHERE docs MATCH '\"e\" *' LIMIT 1").all();
  return header;
}

/**
 * The rows FTS5 counts in `docs`: the first varint of its averages record (rowid 1 of
 * `docs_data`), which every insert and delete updates.
 */
export function fts5RowCount(db: DatabaseSync): number {
  const row = db.prepare("SELECT block FROM docs_data WHERE id = 1").get() as
    | { block: Uint8Array }
    | undefined;
  if (!row) return 0;
  if (!(row.block instanceof Uint8Array)) throw new Error("FTS5 averages record is not a blob");
  // Empty until the first write.
  if (row.block.length === 0) return 0;
  // An SQLite varint: big-endian groups of 7 bits, high bit set on all but the last; the
  // ninth byte carries 8.
  const b = row.block;
  let v = 0;
  for (let k = 0; k < 9; k++) {
    if (k >= b.length) throw new Error("FTS5 averages record is truncated");
    if (k === 8) return v * 256 + b[k];
    v = v * 128 + (b[k] & 0x7f);
    if ((b[k] & 0x80) === 0) return v;
  }
  return v;
}

/** The rows of the content table against the stamped count, O(index): for the full check. */
export function checkDocumentCount(db: DatabaseSync): void {
  const rows = Number(
    (db.prepare("SELECT count(*) AS n FROM docs_content").get() as { n: number }).n,
  );
  const stamped = Number(
    (db.prepare("SELECT value FROM meta WHERE key = 'documents'").get() as { value: number })
      ?.value,
  );
  if (rows !== stamped) {
    throw new Error(`document count ${stamped} does not match the index (${rows} rows)`);
  }
}

/**
 * Full check of an open index: SQLite's page-level quick_check and FTS5's integrity-check.
 * Reads the whole file (about 1 s per million tracks). Throws a {@link SearchSnapshotCorruptError}.
 */
export function verifyStore(db: DatabaseSync, path: string, documentCount?: number): void {
  try {
    checkIndexFile(db, true);
  } catch (e) {
    throw new SearchSnapshotCorruptError("checksum", path, message(e), { cause: e, documentCount });
  }
}

/**
 * The checks of {@link verifyStore}, throwing plain errors: quick_check, FTS5's own
 * integrity-check, the document count and the word list. FTS5's check needs the write lock;
 * with `skipWhenLocked`, a lock held by a running daemon ends the check after the page-level
 * part (what can be done next to it), else it throws.
 */
export function checkIndexFile(db: DatabaseSync, skipWhenLocked: boolean): void {
  const rows = db.prepare("PRAGMA quick_check").all() as { quick_check: string }[];
  const bad = rows.map((r) => r.quick_check).filter((r) => r !== "ok");
  if (bad.length) throw new Error(`integrity check failed: ${bad.slice(0, 3).join("; ")}`);
  // A statement that writes nothing, but needs a write transaction (rolled back).
  try {
    db.exec("BEGIN IMMEDIATE");
  } catch (e) {
    if (skipWhenLocked && /locked|busy/i.test(message(e))) return;
    throw e;
  }
  try {
    db.exec("INSERT INTO docs(docs, rank) VALUES ('integrity-check', 0)");
  } finally {
    db.exec("ROLLBACK");
  }
  checkDocumentCount(db);
  checkWordList(db);
}

/**
 * The stored word list against the one FTS5 derives from the postings (O(index)); throws on the
 * first difference.
 */
export function checkWordList(db: DatabaseSync): void {
  const diff = db.prepare(`
    SELECT term, s, d FROM (
      SELECT w.term, w.doc AS s, v.doc AS d FROM words w LEFT JOIN vocab v ON v.term = w.term
      UNION ALL
      SELECT v.term, NULL, v.doc FROM vocab v WHERE v.term NOT IN (SELECT term FROM words)
    ) WHERE s IS NOT d LIMIT 1`).get() as { term: string; s: number | null; d: number | null };
  if (diff) {
    throw new Error(
      `word list differs from the index: "${diff.term}" in ${diff.s ?? 0} documents, ` +
        `the postings say ${diff.d ?? 0}`,
    );
  }
}

/** Temp files of index writes get this suffix plus a pid and a sequence number. */
export function tempPath(path: string, seq: number): string {
  return `${path}.tmp-${Deno.pid}-${seq}`;
}

/** fsync a directory so a rename in it survives a power loss. */
export function syncDir(dir: string): void {
  // Some filesystems refuse fsync on directories (EINVAL); they give no stronger guarantee.
  const d = Deno.openSync(dir, { read: true });
  try {
    d.syncSync();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotSupported) && !/os error 22\b/.test(String(e))) throw e;
  } finally {
    d.close();
  }
}

/** The directory part of `path`. */
export function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

let tempSeq = 0;

/**
 * Write a copy of `db` (no transaction open) to `path` atomically: `VACUUM INTO` a temp file,
 * fsync, remove any WAL of the file it replaces, rename over, fsync the directory.
 */
export function writeCopy(db: DatabaseSync, path: string): void {
  const tmp = tempPath(path, ++tempSeq);
  try {
    db.prepare("VACUUM INTO ?").run(tmp);
    // Private like the rest of the state dir; SQLite gives the -wal and -shm the same mode.
    Deno.chmodSync(tmp, 0o600);
    const f = Deno.openSync(tmp, { read: true, write: true });
    try {
      f.syncSync();
    } finally {
      f.close();
    }
    // A WAL left by the replaced file would be replayed onto the new one.
    for (const side of ["-wal", "-shm"]) {
      try {
        Deno.removeSync(path + side);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
    Deno.renameSync(tmp, path);
    syncDir(dirOf(path));
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never created */ }
    throw e;
  }
}

/**
 * Remove temp files of writes whose process is gone (a crash mid-write leaves one).
 * Synchronous (a directory of a few files): opening the index then needs no turn of the event
 * loop, so it is done before the daemon's first long synchronous step.
 */
export function removeStaleTemps(path: string): number {
  const dir = dirOf(path);
  const prefix = path.slice(path.lastIndexOf("/") + 1) + ".tmp-";
  let removed = 0;
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (!e.isFile || !e.name.startsWith(prefix)) continue;
      const pid = Number(e.name.slice(prefix.length).split("-")[0]);
      if (pid === Deno.pid || (Number.isInteger(pid) && pid > 0 && processAlive(pid))) continue;
      try {
        Deno.removeSync(`${dir}/${e.name}`);
        removed++;
      } catch { /* gone already */ }
    }
  } catch {
    // An unreadable directory will fail the commit with a clearer error.
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Check the index file at `path` fully without changing it (for `musicfs check`; FTS5's check
 * needs a write lock, taken and released): resolves to
 * its stamped values, or throws the {@link SearchSnapshotError} subclass `SearchIndex.open`
 * would, or a {@link SearchSnapshotCorruptError} when the full check finds damage.
 */
export function inspectSnapshot(
  path: string,
  opts: { generation?: number } = {},
): Promise<StoreHeader> {
  try {
    const { db, header } = openStore(path, { readOnly: false, generation: opts.generation });
    try {
      verifyStore(db, path, header.documentCount);
      const { version, documentCount, generation, bodySize } = header;
      return Promise.resolve({ version, documentCount, generation, bodySize });
    } finally {
      db.close();
    }
  } catch (e) {
    return Promise.reject(e);
  }
}

/** What {@link verifyInBackground} found. */
export type Verification =
  | { ok: true }
  | { ok: false; reason: string; damaged: boolean };

/** A running background check; `cancel` stops it (its promise then resolves `cancelled`). */
export interface BackgroundCheck {
  done: Promise<Verification & { cancelled?: boolean }>;
  cancel(): void;
}

/**
 * The full check of `path` (as {@link verifyStore}) in a child process (./verify_child.ts), so
 * the daemon keeps serving and keeps none of its memory. The caller must not write to the file
 * meanwhile (the FTS5 check takes the write lock). `damaged: false` means the check itself could
 * not run (no child, a busy lock).
 */
export function verifyInBackground(path: string): BackgroundCheck {
  const dir = dirOf(path);
  let child: Deno.ChildProcess;
  // At low CPU priority: seconds of reading at a million tracks, while the daemon starts.
  const nice = ["/usr/bin/nice", "/bin/nice"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  try {
    child = new Deno.Command(nice ?? Deno.execPath(), {
      args: [
        ...(nice ? ["-n", "10", Deno.execPath()] : []),
        "run",
        "--no-config",
        "--quiet",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        new URL("./verify_child.ts", import.meta.url).href,
        path,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
  } catch (e) {
    return {
      done: Promise.resolve({ ok: false, reason: `cannot start: ${message(e)}`, damaged: false }),
      cancel() {},
    };
  }
  let cancelled = false;
  const done = child.output().then((out): Verification & { cancelled?: boolean } => {
    if (cancelled) return { ok: true, cancelled: true };
    const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
    try {
      return JSON.parse(text);
    } catch {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join("; ");
      return { ok: false, reason: `the check exited with ${out.code}: ${err}`, damaged: false };
    }
  });
  return {
    done,
    cancel() {
      cancelled = true;
      try {
        child.kill("SIGKILL");
      } catch { /* exited already */ }
    },
  };
}
