/**
 * Child process of crash_test.ts, killed with SIGKILL by the parent.
 *
 * `one <path>`: commit doc 1, index doc 2 without committing, print "ready", wait.
 * `loop <path>`: open (or create) the index, then forever: index one doc, commit with the next
 * generation, print "committed <generation>". Generation g holds BASE + g documents.
 */
import { SearchIndex } from "../mod.ts";
import { track } from "./helpers.ts";
import { syntheticTracks } from "./synthetic.ts";

/** Documents of the loop's generation 0. */
export const BASE = 3000;
/** Id of the document generation g adds. */
export const loopId = (g: number) => 100_000 + g;

if (import.meta.main) {
  const [mode, path] = Deno.args;
  if (mode === "one") {
    const index = SearchIndex.create(path);
    index.indexFile(track(1, { title: "Committed Alpha", artist: "Crash Test" }));
    await index.commit(1);
    index.indexFile(track(2, { title: "Uncommitted Bravo", artist: "Crash Test" }));
    console.log("ready");
    setInterval(() => {}, 60_000);
  } else if (mode === "loop") {
    let index: SearchIndex;
    try {
      index = await SearchIndex.open(path);
    } catch {
      index = SearchIndex.create(path);
      await index.indexAll(syntheticTracks(BASE, 11));
      await index.commit(0);
    }
    for (let g = index.generation + 1;; g++) {
      index.indexFile(track(loopId(g), { title: `Generation ${g}` }));
      await index.commit(g);
      console.log(`committed ${g}`);
    }
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}
