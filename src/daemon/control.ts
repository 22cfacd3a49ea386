/**
 * The control API: HTTP with JSON bodies over a unix socket, for `musicfs status`, `search`,
 * `rescan` and `unmount`. Access control is the socket's mode (0600) inside a private
 * directory: only the user running the daemon can connect.
 *
 * Routes: `GET /status`, `GET /search?q=&limit=`, `POST /rescan`, `POST /shutdown`.
 * Errors are `{ "error": "<message>" }` with a matching status code.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { logger } from "../log/mod.ts";
import type { TrackRecord } from "../library/types.ts";

const log = logger("daemon", "control");

/** Default and upper bound of `limit` for GET /search. */
export const SEARCH_LIMIT = { default: 20, max: 1000 } as const;

/** What the daemon does for each route. */
export interface ControlHandlers {
  /** GET /status: the daemon's status document. */
  status(): unknown | Promise<unknown>;
  /** GET /search: up to `limit` hits for `q`. */
  search(q: string, limit: number): Promise<unknown>;
  /** POST /rescan: start a rescan; the result is returned as the body. */
  rescan(): Promise<unknown>;
  /** POST /shutdown: the ordered shutdown; started after the 202 answer is on its way. */
  shutdown(): Promise<void>;
}

/** Options of {@link serveControl}. */
export interface ServeControlOptions {
  /** Where to listen; see {@link controlSocketPath}. */
  socketPath: string;
  /** What each route does. */
  handlers: ControlHandlers;
  /** Aborting it shuts the server down (in-flight requests are answered first). */
  signal?: AbortSignal;
}

/** A listening control server. */
export interface ControlServer {
  /** The socket path. */
  readonly path: string;
  /** Resolves once the server has shut down and its socket is removed. */
  readonly finished: Promise<void>;
  /** Stops accepting requests, answers those in flight, removes the socket. */
  shutdown(): Promise<void>;
}

/**
 * A handler error that chooses its HTTP status, e.g.
 * `throw new ControlError(503, "Search index is still loading")`. Other errors answer 500.
 */
export class ControlError extends Error {
  /** HTTP status of the answer. */
  readonly status: number;
  /**
   * Creates the error.
   * @param status HTTP status code
   * @param message shown to the client
   */
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlError";
    this.status = status;
  }
}

/** The control socket cannot be set up. */
export class ControlSocketError extends Error {
  /**
   * Creates the error.
   * @param message what went wrong
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlSocketError";
  }
}

/** No daemon listens on the control socket (missing socket, or a stale one). */
export class DaemonNotRunningError extends Error {
  /** The socket that was tried. */
  readonly socketPath: string;
  /**
   * Creates the error.
   * @param socketPath the socket that was tried
   */
  constructor(socketPath: string, options?: ErrorOptions) {
    super(
      `Cannot reach the daemon: musicfs is not running (nothing listens on ${socketPath})`,
      options,
    );
    this.name = "DaemonNotRunningError";
    this.socketPath = socketPath;
  }
}

/** The daemon accepted the connection but did not answer in time. */
export class DaemonTimeoutError extends Error {
  /**
   * Creates the error.
   * @param what the request, e.g. "GET /status"
   * @param timeoutMs the bound that passed
   */
  constructor(what: string, timeoutMs: number, options?: ErrorOptions) {
    super(`Cannot reach the daemon: no answer to ${what} within ${timeoutMs} ms`, options);
    this.name = "DaemonTimeoutError";
  }
}

/** The control socket exists but this user may not connect to it (another user's daemon). */
export class ControlPermissionError extends Error {
  /** The socket refused. */
  readonly socketPath: string;
  /** Creates the error for `socketPath`. */
  constructor(socketPath: string, options?: ErrorOptions) {
    super(`Permission denied on the control socket ${socketPath}`, options);
    this.name = "ControlPermissionError";
    this.socketPath = socketPath;
  }
}

/** The daemon answered with an error status, or the request failed in transport. */
export class ControlRequestError extends Error {
  /** HTTP status, or 0 when no answer arrived. */
  readonly status: number;
  /**
   * Creates the error.
   * @param status HTTP status, 0 for transport failures
   */
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlRequestError";
    this.status = status;
  }
}

/**
 * Where the daemon of `stateDir` listens: `$XDG_RUNTIME_DIR/musicfs/control-<hash>.sock` when
 * XDG_RUNTIME_DIR is set (a tmpfs cleared at logout, and short enough for sun_path), else
 * `<stateDir>/control.sock`. The hash of the resolved state dir keeps daemons of different
 * state dirs apart while both sides compute the same path.
 */
export function controlSocketPath(
  stateDir: string,
  runtimeDir: string | undefined = Deno.env.get("XDG_RUNTIME_DIR"),
): string {
  const dir = resolve(stateDir);
  if (!runtimeDir) return `${dir}/control.sock`;
  const hash = createHash("sha256").update(dir).digest("hex").slice(0, 16);
  return `${resolve(runtimeDir)}/musicfs/control-${hash}.sock`;
}

/**
 * Listens on `socketPath` (its directory created mode 0700, a stale socket replaced, the
 * socket chmod 0600) and serves the control routes until `signal` aborts.
 * @throws {ControlSocketError} when another process listens there, the path is not a socket,
 * or it is too long for a unix socket address
 */
export async function serveControl(options: ServeControlOptions): Promise<ControlServer> {
  const { socketPath, handlers, signal } = options;
  if (new TextEncoder().encode(socketPath).length > 107) {
    throw new ControlSocketError(
      `Cannot listen on ${socketPath}: the path is longer than a unix socket allows (107 bytes)`,
    );
  }
  await Deno.mkdir(socketPath.slice(0, socketPath.lastIndexOf("/")) || "/", {
    recursive: true,
    mode: 0o700,
  });
  await removeStaleSocket(socketPath);
  let ino: number | null = null;
  // The signal is handled here rather than given to Deno.serve, whose abort listener throws
  // BadResource when the server was already shut down.
  let server: Deno.HttpServer<Deno.UnixAddr>;
  try {
    server = Deno.serve({
      path: socketPath,
      onListen() {},
      onError(e) {
        log.error("Control request failed: {error}", { error: (e as Error)?.stack ?? e });
        return errorResponse(500, "Internal error");
      },
    }, (req) => route(req, handlers));
  } catch (e) {
    throw new ControlSocketError(`Cannot listen on ${socketPath}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    await Deno.chmod(socketPath, 0o600);
    ino = (await Deno.stat(socketPath)).ino;
  } catch (e) {
    await server.shutdown();
    throw new ControlSocketError(`Cannot listen on ${socketPath}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  log.info("Control API listening on {path}", { path: socketPath });
  const onAbort = () => void server.shutdown().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const finished = server.finished.then(async () => {
    signal?.removeEventListener("abort", onAbort);
    // Only remove the socket we created: a successor daemon may already own the path.
    try {
      if ((await Deno.stat(socketPath)).ino === ino) await Deno.remove(socketPath);
    } catch { /* already gone */ }
    log.info("Control API stopped");
  });
  return {
    path: socketPath,
    finished,
    async shutdown() {
      await server.shutdown();
      await finished;
    },
  };
}

async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new ControlSocketError(`Cannot listen on ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (!info.isSocket) {
    throw new ControlSocketError(`Cannot listen on ${path}: it exists and is not a socket`);
  }
  if (!(await nothingListens(path))) {
    throw new ControlSocketError(
      `Cannot listen on ${path}: another process is listening there (is musicfs running?)`,
    );
  }
  log.debug("Removing the stale control socket {path}", { path });
  await Deno.remove(path).catch(() => {});
}

/** Whether connecting to `path` fails because nobody listens (missing or stale socket). */
async function nothingListens(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return false;
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new ControlPermissionError(path, { cause: e });
    }
    return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused;
  }
}

function errorResponse(status: number, message: string, headers?: HeadersInit): Response {
  return Response.json({ error: message }, { status, headers });
}

const ROUTES: Record<string, string> = {
  "/status": "GET",
  "/search": "GET",
  "/rescan": "POST",
  "/shutdown": "POST",
};

async function route(req: Request, handlers: ControlHandlers): Promise<Response> {
  const url = new URL(req.url);
  const what = `${req.method} ${url.pathname}`;
  const allowed = ROUTES[url.pathname];
  if (!allowed) return errorResponse(404, `No such endpoint: ${what}`);
  if (req.method !== allowed) {
    return errorResponse(405, `Method not allowed: ${what} (use ${allowed})`, { Allow: allowed });
  }
  log.debug("Control request {what}", { what });
  try {
    switch (url.pathname) {
      case "/status":
        return Response.json((await handlers.status()) ?? null);
      case "/search": {
        const q = url.searchParams.get("q")?.trim() ?? "";
        if (!q) return errorResponse(400, "Missing query: use /search?q=<words>");
        const limitText = url.searchParams.get("limit");
        const limit = limitText === null || limitText === ""
          ? SEARCH_LIMIT.default
          : Number(limitText);
        if (!Number.isInteger(limit) || limit < 1 || limit > SEARCH_LIMIT.max) {
          return errorResponse(
            400,
            `Invalid limit: ${limitText} (use a whole number from 1 to ${SEARCH_LIMIT.max})`,
          );
        }
        return Response.json((await handlers.search(q, limit)) ?? null);
      }
      case "/rescan":
        return Response.json((await handlers.rescan()) ?? null);
      case "/shutdown":
        // Answer first: the shutdown stops this very server.
        setTimeout(() => {
          handlers.shutdown().catch((e) => {
            log.error("Shutdown requested over the control API failed: {error}", {
              error: (e as Error)?.stack ?? e,
            });
          });
        }, 0);
        return Response.json({ stopping: true }, { status: 202 });
    }
  } catch (e) {
    if (e instanceof ControlError) return errorResponse(e.status, e.message);
    log.error("Control request {what} failed: {error}", { what, error: (e as Error)?.stack ?? e });
    return errorResponse(500, `${what} failed: ${(e as Error)?.message ?? String(e)}`);
  }
  return errorResponse(404, `No such endpoint: ${what}`);
}

/** Options of {@link controlRequest}. */
export interface ControlRequestOptions {
  /** Bound on the whole request, answer included. Default 5000 ms. */
  timeoutMs?: number;
  /** JSON request body. */
  body?: unknown;
}

/**
 * Sends one request to the daemon listening on `socketPath` and returns its JSON answer.
 * @throws {DaemonNotRunningError} when nothing listens on the socket
 * @throws {DaemonTimeoutError} when no answer arrives within `timeoutMs`
 * @throws {ControlRequestError} for an error answer (with its status) or a transport failure
 */
export async function controlRequest(
  socketPath: string,
  method: string,
  path: string,
  options: ControlRequestOptions = {},
): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const what = `${method} ${path}`;
  // A plain connect fails at once when nobody listens; fetch over a unix-socket client was
  // seen to hang until its timeout after many such failures in a row.
  if (await nothingListens(socketPath)) throw new DaemonNotRunningError(socketPath);
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), timeoutMs);
  try {
    let res: Response;
    let text: string;
    try {
      res = await fetch(`http://musicfs${path}`, {
        method,
        client,
        signal: timeout.signal,
        headers: options.body === undefined ? {} : { "content-type": "application/json" },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      text = await res.text();
    } catch (e) {
      if (timeout.signal.aborted) throw new DaemonTimeoutError(what, timeoutMs, { cause: e });
      if (await nothingListens(socketPath)) {
        throw new DaemonNotRunningError(socketPath, { cause: e });
      }
      const reason = (e as Error)?.cause ?? e;
      throw new ControlRequestError(0, `Cannot reach the daemon at ${socketPath}: ${reason}`, {
        cause: e,
      });
    }
    let body: unknown;
    try {
      body = text === "" ? null : JSON.parse(text);
    } catch (e) {
      throw new ControlRequestError(res.status, `${what}: the daemon's answer is not JSON`, {
        cause: e,
      });
    }
    if (!res.ok) {
      const message = typeof (body as { error?: unknown })?.error === "string"
        ? (body as { error: string }).error
        : `${what} failed with status ${res.status}`;
      throw new ControlRequestError(res.status, message);
    }
    return body;
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

/** One match, as GET /search answers it and `--json` prints it. */
export interface SearchHit {
  /** The track id. */
  id: number;
  /** Relevance: higher is better; only comparable within one query. */
  score: number;
  /** The track's /Artists path inside the mount, e.g. `/Artists/A/B (2001)/01 - C.flac`. */
  path: string;
  /** Tags as stored; undefined when the file has none. */
  artist?: string;
  /** Album artist tag. */
  albumArtist?: string;
  /** Album tag. */
  album?: string;
  /** Title tag. */
  title?: string;
  /** Year from the date tag. */
  year?: number;
  /** First genre. */
  genre?: string;
  /** Lower-case source extension, e.g. `flac`. */
  ext: string;
}

/** The {@link SearchHit} of `track` at virtual `path`: what GET /search and `--json` print. */
export function toSearchHit(track: TrackRecord, score: number, path: string): SearchHit {
  return {
    id: track.id,
    score,
    path,
    artist: track.artist,
    albumArtist: track.albumArtist,
    album: track.album,
    title: track.title,
    year: track.year,
    genre: track.genre,
    ext: track.ext,
  };
}
