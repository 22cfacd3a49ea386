/**
 * A FUSE library that can be made to hang: mounts a demo filesystem at argv[0] serving every file
 * under argv[1] (read from the real files), prints `ready`, and serves until its stdin closes.
 * The torture SIGSTOPs it to stand for a dead network share: every request to it then waits.
 *
 * @module
 */
import { DemoFs, FuseSession } from "../../src/fuse/mod.ts";

const [mountpoint, source] = Deno.args;
const fs = new DemoFs();
const walk = (rel: string) => {
  for (const e of Deno.readDirSync(rel ? `${source}/${rel}` : source)) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) {
      fs.addDir(r);
      walk(r);
    } else if (e.isFile) fs.addSource(r, `${source}/${r}`);
  }
};
walk("");
const session = await FuseSession.mount(mountpoint, fs, {});
console.log(`ready ${session.method}`);
(async () => {
  for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
  await session.unmount();
})();
await session.closed;
Deno.exit(0);
