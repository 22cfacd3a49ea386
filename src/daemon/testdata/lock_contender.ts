/**
 * Child process of lock_test.ts: prints "ready", tries the lock of the directory given as its
 * argument once a line arrives on stdin, prints "won" or "lost <pid>", and holds a won lock
 * until stdin closes.
 *
 * @module
 */
import { acquireLock, AlreadyRunningError } from "../lock.ts";

const encoder = new TextEncoder();
const out = (s: string) => Deno.stdout.writeSync(encoder.encode(s + "\n"));
const reader = Deno.stdin.readable.getReader();
out("ready");
await reader.read();
try {
  const lock = await acquireLock(Deno.args[0]);
  out("won");
  while (!(await reader.read()).done);
  await lock.release();
} catch (e) {
  out(e instanceof AlreadyRunningError ? `lost ${e.pid}` : `error ${(e as Error).message}`);
}
