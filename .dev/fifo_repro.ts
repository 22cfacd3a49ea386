import { makeLibrary } from "../tests/fixtures/mod.ts";
import { daemonDirs, startDaemon } from "../tests/support/daemon.ts";
import { run } from "../tests/support/helpers.ts";
const dirs = await daemonDirs("musicfs-fifo-");
await makeLibrary(dirs.lib, { tracks: 4, seed: 3 });
const d = await startDaemon({ libraries: [dirs.lib], mountpoint: dirs.mnt, stateDir: dirs.state, cacheDir: dirs.cache });
await d.waitScanDone();
const f = (await run(["find", `${dirs.mnt}/Artists`, "-type", "f"])).stdout.trim().split("\n")[0];
const { getXattr } = await import("../tests/support/helpers.ts"); const src = (await getXattr(f, "user.musicfs.source"))!;
console.log(f, src);
await Deno.remove(src);
await run(["mkfifo", src]);
console.log(await run(["timeout", "5", "cat", f]));
await new Promise((r) => setTimeout(r, 3000));
console.log("problems:", (await run(["cat", `${dirs.mnt}/.musicfs/problems.txt`])).stdout);
console.log("status:", await d.getStatus(3000).then((s) => JSON.stringify(s.origins), (e) => String(e)));
const pid = d.pid;
for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
  const comm = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/comm`).trim();
  let stack = "";
  try { stack = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stack`).split("\n").slice(0, 4).join(" | "); } catch {}
  const wchan = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/wchan`);
  if (wchan !== "0" ) console.log(t.name, comm, wchan, stack.slice(0, 200));
}
const t0 = Date.now(); await d.stop(5000); console.log("stopped in", Date.now() - t0, d.exitStatus);
await run(["umount", "-l", dirs.mnt]);
await dirs.cleanup();
