/**
 * Tag reading over the messy library (issue 10, rules 2, 4, 5, 8 and 10): every case's expected
 * tags, embedded pictures byte for byte, and cut files refused with a reason.
 */
import assert from "node:assert/strict";
import { makeMessyLibrary, type MessyLibrary } from "../../tests/fixtures/mod.ts";
import { embeddedPictureRange, readEmbeddedPicture } from "./embedded_picture.ts";
import { readTags } from "./tags.ts";
import { cleanText, fixMojibake } from "./text.ts";

let shared: Promise<{ lib: MessyLibrary; dir: string }> | undefined;
function messy() {
  shared ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "musicfs-messy-tags-" });
    return { lib: await makeMessyLibrary(`${dir}/lib`), dir };
  })();
  return shared;
}

Deno.test("messy library: every track reads with the tags its case expects", async () => {
  const { lib } = await messy();
  for (const t of lib.tracks) {
    const r = await readTags(`${lib.root}/${t.relPath}`);
    assert.ok(r.ok, `${t.relPath}: ${!r.ok && r.reason}`);
    const got = r.tags;
    for (const [k, want] of Object.entries(t.expect)) {
      if (k === "noTrack") assert.equal(got.track, undefined, `${t.relPath}: track`);
      else assert.deepEqual(got[k as keyof typeof got], want, `${t.relPath}: ${k}`);
    }
  }
});

Deno.test("messy library: cut AAC, MP2, WMA and WavPack files are refused with a reason", async () => {
  const { lib } = await messy();
  const cut = lib.problems.filter((p) => p.case === "cut");
  assert.equal(cut.length, 4);
  for (const p of cut) {
    const r = await readTags(`${lib.root}/${p.relPath}`);
    assert.ok(!r.ok, `${p.relPath} was accepted`);
    assert.match(r.reason, p.reason, p.relPath);
  }
});

Deno.test("messy library: embedded front pictures are located and read byte for byte", async () => {
  const { lib } = await messy();
  const embedded = lib.covers.flatMap((c) => c.embedded ? [c.embedded] : []);
  assert.equal(embedded.length, 4);
  for (const e of embedded) {
    const got = await readEmbeddedPicture(`${lib.root}/${e.relPath}`);
    assert.ok(got, `${e.relPath}: no picture`);
    assert.equal(got.mime, e.mime);
    assert.deepEqual(got.bytes, e.bytes, e.relPath);
    assert.equal(embeddedPictureRange(`${lib.root}/${e.relPath}`)?.size, e.bytes.length);
  }
  const plain = lib.tracks.find((t) => t.relPath.startsWith("Covers/Plain/"))!;
  assert.equal(await readEmbeddedPicture(`${lib.root}/${plain.relPath}`), undefined);
});

Deno.test("text: UTF-8 read as Latin-1 is repaired, real Latin-1 kept, controls go, NFC", () => {
  assert.equal(fixMojibake("MÃ¶tley CrÃ¼e"), "Mötley Crüe");
  assert.equal(fixMojibake("Ð¡ÐµÑ\u0080Ð³ÐµÐ¹"), "Сергей");
  assert.equal(fixMojibake("Sæglópur"), "Sæglópur");
  assert.equal(fixMojibake("Crème brûlée"), "Crème brûlée");
  assert.equal(cleanText("Bjo\u0308rk"), "Björk");
  assert.equal(cleanText(" Tab\tSeparated\u0007 Title\r\n\0"), "Tab Separated Title");
  assert.equal(cleanText("  plain  "), "plain");
  assert.equal(cleanText("\u0000\u0001"), "");
});

Deno.test({
  name: "messy library: clean up",
  sanitizeResources: false,
  fn: async () => {
    if (shared) await Deno.remove((await shared).dir, { recursive: true });
  },
});
