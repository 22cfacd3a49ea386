/**
 * Logging for every module: `logger("fuse")` gives the `["musicfs", "fuse"]` logtape logger.
 * Until {@link setupLogging} runs (tests, library use) records go nowhere, so modules can log
 * freely without a configured sink.
 */
import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  getTextFormatter,
  resetSync,
  type Sink,
} from "@logtape/logtape";

/** Severity of a record, least to most severe; the same strings logtape uses. */
export type LogLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";

/**
 * The part of a logtape logger musicfs uses. `message` is a template whose `{name}`
 * placeholders are filled from `properties` (which also go to JSON output as fields).
 */
export interface Logger {
  /** Very detailed tracing (e.g. each systemd notification); off unless `--log-level trace`. */
  trace(message: string, properties?: Record<string, unknown>): void;
  /** Diagnostics useful when investigating a problem; off by default. */
  debug(message: string, properties?: Record<string, unknown>): void;
  /** Routine events worth keeping: mounts, scans, rescans. */
  info(message: string, properties?: Record<string, unknown>): void;
  /** Something went wrong but musicfs carries on (a file skipped, a retry). */
  warn(message: string, properties?: Record<string, unknown>): void;
  /** Same as {@link Logger.warn}. */
  warning(message: string, properties?: Record<string, unknown>): void;
  /** An operation failed; the daemon may still be serving. */
  error(message: string, properties?: Record<string, unknown>): void;
  /** Unrecoverable: the process cannot continue. */
  fatal(message: string, properties?: Record<string, unknown>): void;
}

/** The logger of one concern, e.g. `logger("library", "scanner")`. */
export function logger(...category: string[]): Logger {
  return getLogger(["musicfs", ...category]);
}

/** Where and how logs are written. */
export interface LoggingOptions {
  /** The least severe level written; records below it are dropped. */
  level: LogLevel;
  /** `text`: one human-readable line per record; `json`: JSON lines with the properties. */
  format: "text" | "json";
  /** Append to this file instead of writing to stderr. */
  file?: string;
}

/** Parse a `--log-level` value; accepts `warn` for `warning`. */
export function parseLevel(value: string): LogLevel {
  const v = value.toLowerCase() === "warn" ? "warning" : value.toLowerCase();
  const levels = ["trace", "debug", "info", "warning", "error", "fatal"];
  if (!levels.includes(v)) {
    throw new Error(`Unknown log level: ${value} (use one of ${levels.join(", ")})`);
  }
  return v as LogLevel;
}

/** Route every musicfs logger to stderr or a file, as text or JSON lines. */
export function setupLogging(opts: LoggingOptions): void {
  const formatter = opts.format === "json" ? getJsonLinesFormatter() : getTextFormatter();
  let sink: Sink;
  if (opts.file) {
    // Synchronous like the stderr sink: configureSync cannot take an async stream sink, and
    // the last lines before a crash must reach the file.
    const file = Deno.openSync(opts.file, { append: true, create: true, mode: 0o600 });
    const enc = new TextEncoder();
    sink = (record) => {
      file.writeSync(enc.encode(formatter(record)));
    };
  } else {
    // A synchronous write keeps the last lines before a crash; logs are not on a hot path.
    const encoder = new TextEncoder();
    sink = (record) => {
      Deno.stderr.writeSync(encoder.encode(formatter(record)));
    };
  }
  resetSync();
  configureSync({
    reset: true,
    sinks: { main: sink },
    loggers: [
      { category: ["musicfs"], lowestLevel: opts.level, sinks: ["main"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: ["main"] },
    ],
  });
}
