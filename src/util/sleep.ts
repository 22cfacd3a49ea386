/** The one sleep that a shutdown can cut short. */

/**
 * Wait `ms`, or less: resolves (never rejects) as soon as `signal` aborts, and at once when it
 * already has. The timer and the listener are both cleared either way.
 *
 * @example
 * ```ts
 * import { abortableSleep } from "./sleep.ts";
 * const stop = new AbortController();
 * stop.abort();
 * await abortableSleep(60_000, stop.signal); // returns at once
 * ```
 */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
