/** The README's command-line synopsis is exactly what `musicfs --help` prints. */
import assert from "node:assert/strict";
import { main, synopsis } from "./mod.ts";

const README = new URL("../../README.md", import.meta.url);

/** The first code block under `## Command line`. */
async function readmeSynopsis(): Promise<string> {
  const text = await Deno.readTextFile(README);
  const m = /^## Command line\n\n```\n([\s\S]*?)\n```/m.exec(text);
  assert.ok(m, "README.md has no code block under ## Command line");
  return m[1];
}

Deno.test("README synopsis equals the synopsis of musicfs --help", async () => {
  assert.equal(await readmeSynopsis(), synopsis());
  // And --help really prints it (captured from the process's stdout writes).
  const chunks: string[] = [];
  const log = console.log;
  const write = Deno.stdout.writeSync;
  Deno.stdout.writeSync = (b: Uint8Array) => {
    chunks.push(new TextDecoder().decode(b));
    return b.length;
  };
  console.log = (...a: unknown[]) => chunks.push(a.join(" ") + "\n");
  let code: number;
  try {
    code = await main(["--help"]);
  } finally {
    Deno.stdout.writeSync = write;
    console.log = log;
  }
  assert.equal(code, 0);
  assert.ok(chunks.join("").includes(`Synopsis:\n${synopsis()}\n`), chunks.join(""));
});

Deno.test("the synopsis names every option of every command", () => {
  const text = synopsis();
  for (
    const flag of [
      "--mountpoint",
      "--foreground",
      "--wait",
      "--lazy",
      "--state-dir",
      "--cache-dir",
      "--cache-size",
      "--cache-reads",
      "--layout",
      "--allow-other",
      "--log-level",
      "--log-format",
      "--demo",
      "--json",
      "--limit",
      "--repair",
    ]
  ) assert.ok(text.includes(`[${flag}`), `${flag} missing`);
  for (const cmd of ["mount", "unmount", "status", "search", "rescan", "check"]) {
    assert.match(text, new RegExp(`^musicfs ${cmd} `, "m"));
  }
});
