import assert from "node:assert/strict";
import { distance, Vocabulary } from "./vocab.ts";
import { prng } from "./testdata/synthetic.ts";

function randomWords(n: number, seed: number): string[] {
  const r = prng(seed);
  const alphabet = "abcdeéfghijklmnoöpqrstuvwxyz東京ü0123".split("");
  const out = new Set<string>();
  while (out.size < n) {
    const len = 1 + Math.floor(r() * 9);
    let w = "";
    for (let i = 0; i < len; i++) {
      w += alphabet[Math.floor(r() * (r() < 0.8 ? 8 : alphabet.length))];
    }
    out.add(w);
  }
  return [...out];
}

Deno.test("vocabulary fuzzy lookups find exactly the words within the distance", () => {
  const words = randomWords(3000, 1);
  // Half loaded sorted, half added later (some merged, some still in the side list).
  const vocab = new Vocabulary(words.slice(0, 1500));
  for (const w of words.slice(1500)) vocab.add(w);
  assert.equal(vocab.size, 3000);
  const r = prng(2);
  for (let i = 0; i < 200; i++) {
    const q = words[Math.floor(r() * words.length)].slice(0, 1 + Math.floor(r() * 8)) +
      (r() < 0.5 ? "x" : "");
    for (const max of [1, 2]) {
      const want = new Map(
        words.map((w) => [w, distance(q, w, max)] as const).filter(([, d]) => d <= max),
      );
      assert.deepEqual(vocab.fuzzy(q, max), want, `${q} within ${max}`);
    }
  }
});

Deno.test("vocabulary answers exact and prefix lookups and keeps the closest fuzzy words", () => {
  const vocab = new Vocabulary(["beatles", "beat", "björk", "bjork"]);
  vocab.add("beatles");
  vocab.add("東京事変");
  assert.equal(vocab.size, 5);
  assert.ok(vocab.has("beat") && vocab.has("東京事変") && !vocab.has("bea"));
  assert.ok(vocab.hasPrefix("bea") && vocab.hasPrefix("東京") && !vocab.hasPrefix("x"));
  assert.deepEqual([...vocab.fuzzy("beatls", 1)], [["beatles", 1]]);
  assert.deepEqual([...vocab.fuzzy("bjork", 1, 1)], [["bjork", 0]], "closest first");
  assert.equal(distance("kitten", "sitting", 5), 3);
  assert.equal(distance("kitten", "sitting", 2), 3, "capped at max + 1");
});
