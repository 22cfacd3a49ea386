import assert from "node:assert/strict";
import { SearchIndex } from "./mod.ts";
import { ids, withTempDir } from "./testdata/helpers.ts";
import { BASE, loopId } from "./testdata/crash_child.ts";
import { prng } from "./testdata/synthetic.ts";

const CHILD = new URL("./testdata/crash_child.ts", import.meta.url).pathname;
const REPO = new URL("../../", import.meta.url).pathname;

/** A child `deno run` of crash_child.ts whose stdout lines can be awaited. */
class Child {
  readonly process: Deno.ChildProcess;
  readonly lines: string[] = [];
  #wake: (() => void) | undefined;
  #done = false;

  constructor(mode: string, path: string) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", CHILD, mode, path],
      cwd: REPO,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#read();
  }

  async #read() {
    let partial = "";
    for await (const chunk of this.process.stdout.pipeThrough(new TextDecoderStream())) {
      partial += chunk;
      const parts = partial.split("\n");
      partial = parts.pop()!;
      this.lines.push(...parts);
      this.#wake?.();
    }
    this.#done = true;
    this.#wake?.();
  }

  /** Wait until `pred(lines)`; fails if the child exits first or 60 s pass. */
  async until(pred: (lines: string[]) => boolean): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (!pred(this.lines)) {
      if (this.#done) throw new Error(`child exited early; output: ${this.lines.join("|")}`);
      if (Date.now() > deadline) throw new Error("child did not get there in 60 s");
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  }

  async kill(): Promise<Deno.CommandStatus> {
    this.process.kill("SIGKILL");
    const status = await this.process.status;
    assert.equal(status.signal, "SIGKILL");
    return status;
  }
}

Deno.test("search survives uncommitted crash", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.snapshot`;
    const child = new Child("one", path);
    await child.until((lines) => lines.includes("ready"));
    await child.kill();
    const index = await SearchIndex.open(path);
    assert.deepEqual(ids(index.search("committed alpha")), [1], "the committed doc survives");
    assert.deepEqual(ids(index.search("uncommitted bravo")), [], "the uncommitted doc is lost");
    assert.deepEqual(ids(index.search("crash test")), [1]);
    assert.equal(index.size, 1);
    assert.equal(index.generation, 1);
  });
});

Deno.test("SIGKILL during commits leaves the old or the new index", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.snapshot`;
    const random = prng(Date.now());
    let walKills = 0;
    for (let round = 0; round < 8; round++) {
      const child = new Child("loop", path);
      const startLines = child.lines.length;
      const want = 1 + Math.floor(random() * 3);
      await child.until((lines) => lines.length - startLines >= want);
      // Commits follow each other without pause: a kill lands mid-transaction as often as not.
      await new Promise((r) => setTimeout(r, Math.floor(random() * 40)));
      await child.kill();
      const printed = child.lines.filter((l) => l.startsWith("committed "));
      const last = Number(printed.at(-1)!.split(" ")[1]);
      try {
        if (Deno.statSync(`${path}-wal`).size > 0) walKills++;
      } catch { /* no WAL */ }

      const index = await SearchIndex.open(path);
      const g = index.generation;
      assert.ok(g === last || g === last + 1, `round ${round}: generation ${g}, last ${last}`);
      assert.equal(index.size, BASE + g, `round ${round}: documents of generation ${g}`);
      assert.deepEqual(ids(index.search(`generation ${g}`)), [loopId(g)]);
      assert.deepEqual(ids(index.search(`generation ${g + 1}`)), []);
      index.close();
      // The next child resumes from this index.
      const recovered = await SearchIndex.openWithRecovery(path, { generation: g });
      assert.equal(recovered.size, BASE + g);
      recovered.close();
    }
    assert.ok(walKills >= 1, "at least one kill left commits in the WAL only");
  });
});
