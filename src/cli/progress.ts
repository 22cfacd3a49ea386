/**
 * The scan progress bar of `musicfs mount --wait` and `--foreground` on a terminal: one line
 * on stderr, redrawn in place, cleared when the scan is done. Off a terminal it draws nothing.
 *
 * @module
 */
import type { DaemonStatus } from "../daemon/mod.ts";

const num = (n: number) => n.toLocaleString("en-US");

/** The bar for `status`, `width` columns at most (no newline). */
export function progressLine(status: Pick<DaemonStatus, "scan" | "tracks">, width = 80): string {
  const scan = status.scan;
  if (!scan) return `scanning: starting, ${num(status.tracks)} tracks so far`.slice(0, width);
  const walkDone = scan.walkDone ?? scan.phase !== "walking";
  const tracks = `${num(status.tracks)} tracks`;
  const barWidth = 20;
  let bar: string;
  let text: string;
  if (walkDone && scan.total > 0) {
    const filled = Math.min(barWidth, Math.floor((scan.parsed / scan.total) * barWidth));
    bar = `[${"#".repeat(filled)}${".".repeat(barWidth - filled)}]`;
    const pct = Math.floor((scan.parsed / scan.total) * 100);
    text = `${pct}% ${num(scan.parsed)}/${num(scan.total)} files read, ${tracks}`;
  } else {
    // Total unknown while walking: a moving marker instead of a fill.
    const at = Math.floor(Date.now() / 250) % barWidth;
    bar = `[${".".repeat(at)}#${".".repeat(barWidth - at - 1)}]`;
    text = `${num(scan.seen)} files found, ${num(scan.parsed)} read, ${tracks}`;
  }
  return `${bar} ${text}`.slice(0, width);
}

/** A progress bar on stderr, drawn only when stderr is a terminal. */
export class ProgressBar {
  readonly #tty: boolean;
  #drawn = false;
  readonly #enc = new TextEncoder();

  /** `tty` overrides the terminal check (tests). */
  constructor(tty: boolean = Deno.stderr.isTerminal()) {
    this.#tty = tty;
  }

  /** Whether anything will be drawn. */
  get enabled(): boolean {
    return this.#tty;
  }

  /** Redraws the bar for `status`. */
  update(status: Pick<DaemonStatus, "scan" | "tracks">): void {
    if (!this.#tty) return;
    const cols = (() => {
      try {
        return Deno.consoleSize().columns;
      } catch {
        return 0;
      }
    })();
    // A terminal that reports no size (a pty with none set) gets the usual 80 columns.
    this.#write(`\r\x1b[2K${progressLine(status, cols >= 40 ? cols - 1 : 79)}`);
    this.#drawn = true;
  }

  /** Clears the bar, so the next line starts clean. */
  clear(): void {
    if (this.#tty && this.#drawn) this.#write("\r\x1b[2K");
    this.#drawn = false;
  }

  #write(s: string): void {
    try {
      Deno.stderr.writeSync(this.#enc.encode(s));
    } catch { /* a closed terminal: the bar is only a courtesy */ }
  }
}
