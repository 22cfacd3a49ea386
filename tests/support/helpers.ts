/** Shared test helpers: /dev/fuse detection, temp dirs, async subprocesses, libc xattrs. */
import "./isolation.ts";

/** Whether real kernel mounts can run here; when not, say so loudly once. */
export const HAVE_FUSE: boolean = (() => {
  try {
    Deno.statSync("/dev/fuse");
    return true;
  } catch {
    console.error(
      "\n*** /dev/fuse is absent: every test that mounts is SKIPPED on this machine ***\n",
    );
    return false;
  }
})();

/** Test options for a test that needs a real FUSE mount. */
export const needsFuse: { ignore: boolean; sanitizeOps: false; sanitizeResources: false } = {
  ignore: !HAVE_FUSE,
  sanitizeOps: false,
  sanitizeResources: false,
};

/** A temp dir removed (with anything mounted under it detached first) by `cleanup`. */
export async function tempDir(
  prefix = "musicfs-test-",
): Promise<{ path: string; cleanup(): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async cleanup() {
      const mounts = (await Deno.readTextFile("/proc/self/mounts")).split("\n")
        .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
        .filter((m) => m && m.startsWith(path + "/"));
      for (const m of mounts.reverse()) {
        await run(["umount", "-l", m]);
      }
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Run a command asynchronously (never sync: a sync call would block our own FUSE loop). */
export async function run(
  cmd: string[],
  opts: { env?: Record<string, string>; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Whether `path` is a mountpoint right now. */
export async function isMounted(path: string): Promise<boolean> {
  const text = await Deno.readTextFile("/proc/self/mounts");
  return text.split("\n").some((l) => l.split(" ")[1]?.replace(/\\040/g, " ") === path);
}

/** Wait until `cond()` holds, polling; throws after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const xlib = Deno.dlopen("libc.so.6", {
  getxattr: {
    parameters: ["buffer", "buffer", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  listxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize", nonblocking: true },
});

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0") as Uint8Array<ArrayBuffer>;
}

/** getxattr(2) off the main thread; null when absent (-1). */
export async function getXattr(path: string, name: string): Promise<string | null> {
  const buf = new Uint8Array(4096);
  const n = Number(await xlib.symbols.getxattr(cstr(path), cstr(name), buf, 4096n));
  return n < 0 ? null : new TextDecoder().decode(buf.subarray(0, n));
}

/** listxattr(2) off the main thread. */
export async function listXattr(path: string): Promise<string[]> {
  const buf = new Uint8Array(4096);
  const n = Number(await xlib.symbols.listxattr(cstr(path), buf, 4096n));
  if (n < 0) throw new Error(`listxattr ${path} failed`);
  return new TextDecoder().decode(buf.subarray(0, n)).split("\0").filter(Boolean);
}

/** Deterministic pseudo-random bytes. */
export function randomBytes(n: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
