/**
 * Tests that run something as another user (root only): a throwaway user, a private home made
 * for it, and a deno it can run. Everything is made fresh under a temp dir the test owns and
 * handed over with `chown -h` (never through a symlink); nothing at a fixed path is touched.
 *
 * @module
 */
import { run } from "./helpers.ts";

/** A user to run things as. */
export interface TestUser {
  /** Login name. */
  name: string;
  uid: number;
  gid: number;
  /** Whether it was made for this test (else it is `nobody`). */
  created: boolean;
  /** Delete it again (a no-op for `nobody`). */
  remove(): Promise<void>;
}

/** The ids of an existing user. */
export async function existingUser(name: string): Promise<TestUser> {
  const uid = Number((await run(["id", "-u", name])).stdout.trim());
  const gid = Number((await run(["id", "-g", name])).stdout.trim());
  return { name, uid, gid, created: false, remove: () => Promise.resolve() };
}

/**
 * A throwaway user with a group of its own (`useradd`, no home); `nobody` when users cannot be
 * created here, which is said loudly. Call `remove` in `finally`.
 */
export async function throwawayUser(): Promise<TestUser> {
  const name = `mfs${crypto.randomUUID().replace(/-/g, "").slice(0, 10)}`;
  const add = await retried(() =>
    run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name])
      .catch((e) => ({ code: -1, stdout: "", stderr: String(e) }))
  );
  if (add.code !== 0) {
    console.error(`*** useradd failed (${add.stderr.trim()}); the test runs as nobody ***`);
    return await existingUser("nobody");
  }
  const u = await existingUser(name);
  return {
    ...u,
    created: true,
    async remove() {
      const del = await retried(() => run(["userdel", name]));
      if (del.code !== 0) console.error(`*** userdel ${name} failed: ${del.stderr.trim()}`);
      // userdel drops the user's own group where the system is set up so; make sure.
      if ((await run(["getent", "group", name])).code === 0) await run(["groupdel", name]);
    },
  };
}

/**
 * `cmd` until it succeeds or has failed 10 times: useradd and userdel fail while another
 * process holds /etc/passwd's lock (tests running side by side).
 */
async function retried(
  cmd: () => Promise<{ code: number; stdout: string; stderr: string }>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let r = await cmd();
  for (let i = 0; i < 9 && r.code !== 0 && /lock|try again/i.test(r.stderr); i++) {
    await new Promise((ok) => setTimeout(ok, 200 + 100 * i));
    r = await cmd();
  }
  return r;
}

/** A new directory under `parent` (mkdtemp), then owned by `user` (`chown -h`). */
export async function privateDirFor(user: TestUser, parent: string, prefix: string) {
  const dir = await Deno.makeTempDir({ dir: parent, prefix });
  const r = await run(["chown", "-h", `${user.uid}:${user.gid}`, dir]);
  if (r.code !== 0) throw new Error(`chown -h ${dir}: ${r.stderr.trim()}`);
  return dir;
}

/** `setpriv` arguments that run a command as `user` with no supplementary groups. */
export function asUser(user: TestUser): string[] {
  return ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"];
}

/**
 * A deno binary `user` can run: ours, or (when ours sits in a directory closed to the user,
 * e.g. a checkout in a 0700 directory) a copy in a fresh 0755 directory under `parent`.
 */
export async function denoFor(user: TestUser, parent: string): Promise<string> {
  const ours = Deno.execPath();
  const can = await run([...asUser(user), ours, "--version"]).catch(() => ({ code: 1 }));
  if (can.code === 0) return ours;
  const bin = await Deno.makeTempDir({ dir: parent, prefix: "bin-" });
  await Deno.chmod(bin, 0o755);
  await Deno.copyFile(ours, `${bin}/deno`);
  await Deno.chmod(`${bin}/deno`, 0o755);
  return `${bin}/deno`;
}
