/**
 * A full garbage collection on demand. Deno has no API for it (only the `--expose-gc` V8 flag
 * at startup, which the daemon's launchers do not pass); V8's own flag can be set at run time
 * through node:v8, and a fresh context then sees `gc`. Used once things are quiet after a scan
 * or when the tree was dropped from memory, so the heap it left behind shrinks at once
 * instead of whenever V8 gets to it.
 *
 * @module
 */
import v8 from "node:v8";
import vm from "node:vm";

let gc: (() => void) | null | undefined;

/** Collect all garbage now and shrink the heap; false when this runtime cannot. */
export function collectGarbage(): boolean {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString("--expose-gc");
      const found = vm.runInNewContext("gc");
      gc = typeof found === "function" ? found as () => void : null;
    } catch {
      gc = null;
    }
  }
  if (!gc) return false;
  gc();
  return true;
}
