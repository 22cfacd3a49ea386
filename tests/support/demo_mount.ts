/**
 * A child process that mounts a small demo filesystem at argv[0], prints `ready <method>` and
 * serves until SIGTERM or until its stdin closes (then unmounts). Used by tests that kill or
 * run the serving process as another user.
 */
import { DemoFs, FuseSession } from "../../src/fuse/mod.ts";

const [mountpoint, ...flags] = Deno.args;
const fs = new DemoFs();
fs.addFile("hello.txt", "hello from the demo filesystem\n");
fs.addDir("sub");
fs.addFile("sub/inner.txt", "inner\n");
const session = await FuseSession.mount(mountpoint, fs, { useHelper: flags.includes("--helper") });
console.log(`ready ${session.method}`);
const stop = () => session.unmount();
Deno.addSignalListener("SIGTERM", stop);
(async () => {
  for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
  await stop();
})();
await session.closed;
Deno.exit(0);
