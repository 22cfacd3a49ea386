/**
 * Test helper: opens a store in `Deno.args[0]` and puts random chunks (and maps them) until it
 * is killed, printing the count after each put. Used to SIGKILL a writer mid-flight.
 */
import { CasStore } from "../store.ts";

const store = await CasStore.open({ dir: Deno.args[0], maxSize: 4 << 20, accessFlushMs: 20 });
const encoder = new TextEncoder();
for (let i = 0;; i++) {
  const data = new Uint8Array(16 * 1024 + (i % 1000));
  crypto.getRandomValues(data.subarray(0, 4096));
  const h = await store.storeChunkFor(`f${i}@1:1`, 0, data);
  if (i % 3 === 0) await store.get(h);
  await Deno.stdout.write(encoder.encode(`${i + 1}\n`));
}
