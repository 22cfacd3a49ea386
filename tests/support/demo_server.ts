/**
 * The demo filesystem of demo_mount.ts served by a child process, for tests that need a mount
 * whose server they can stop (SIGSTOP), kill or hang.
 */

const SCRIPT = new URL("./demo_mount.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** A running demo server. */
export interface DemoServer {
  /** The serving child process. */
  child: Deno.ChildProcess;
  /** Its `ready <method>` line. */
  ready: string;
  /** Resume it if stopped, let it unmount and exit (closes its stdin), and wait for it. */
  stop(): Promise<void>;
  /** Resume it if stopped and SIGKILL it: its mount stays behind, dead. Waits for it. */
  kill(): Promise<void>;
}

/** Mount the demo filesystem at `mnt` in a child process; resolves once it serves. */
export async function startDemoServer(mnt: string): Promise<DemoServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `--config=${CONFIG}`, SCRIPT, mnt],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const signal = (s: Deno.Signal) => {
    try {
      child.kill(s);
    } catch { /* already gone */ }
  };
  const release = async () => {
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await child.stdin.close().catch(() => {});
  };
  const server: DemoServer = {
    child,
    ready: "",
    async stop() {
      signal("SIGCONT");
      await child.stdin.close().catch(() => {});
      await release();
    },
    async kill() {
      signal("SIGCONT");
      signal("SIGKILL");
      await release();
    },
  };
  const reader = child.stdout.getReader();
  let out = "";
  try {
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (!out.startsWith("ready")) {
    await server.kill();
    throw new Error(`the demo server did not start: ${out.trim()}`);
  }
  server.ready = out.trim();
  return server;
}
