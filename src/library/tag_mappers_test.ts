import assert from "node:assert/strict";
import { parseBuffer } from "music-metadata";
import {
  AUDIO_FORMATS,
  BROKEN_KINDS,
  encodeBroken,
  encodeTrack,
  FORMAT_EXT,
  makeLibrary,
  makeMessyLibrary,
} from "../../tests/fixtures/mod.ts";
import { shareTagMappers } from "./tag_mappers.ts";
import { readTags, type TagResult } from "./tags.ts";

async function audioFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch {
      return; // the messy library's folders past PATH_MAX
    }
    for (const e of entries) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile && !/\.(jpe?g|png|m3u8?|txt|cue|log)$/i.test(e.name)) out.push(p);
    }
  };
  await walk(dir);
  return out.sort();
}

/** The tag mappers a parse of `bytes` ran with (through the parse's observer). */
async function mappersOf(bytes: Uint8Array, mimeType: string): Promise<Record<string, unknown>> {
  let collector: { tagMapper: { tagMappers: Record<string, unknown> } } | undefined;
  await parseBuffer(bytes, { mimeType }, {
    observer: (u) => (collector ??= u.metadata as unknown as typeof collector),
  });
  return { ...collector!.tagMapper.tagMappers };
}

Deno.test("shared tag mappers: the same tags as fresh ones for every fixture, messy and broken file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-tag-mappers-" });
  try {
    await makeMessyLibrary(`${dir}/messy`);
    await makeLibrary(`${dir}/lib`, { tracks: 120, broken: 8, covers: true, seed: 7 });
    await Deno.mkdir(`${dir}/one`);
    for (const format of AUDIO_FORMATS) {
      await Deno.writeFile(
        `${dir}/one/${format}.${FORMAT_EXT[format]}`,
        encodeTrack(format, { artist: "Ärtist", album: "Albüm", title: "Tïtle", track: 3 }),
      );
    }
    for (const kind of BROKEN_KINDS) {
      const b = encodeBroken(kind, 3);
      await Deno.writeFile(`${dir}/one/broken-${kind}.${b.ext}`, b.bytes);
    }
    const files = await audioFiles(dir);
    assert.ok(files.length > 150, `only ${files.length} files`);

    const fresh: TagResult[] = [];
    for (const f of files) fresh.push(await readTags(f));
    const wav = encodeTrack("wav", { title: "x" });
    const before = [await mappersOf(wav, "audio/wav"), await mappersOf(wav, "audio/wav")];
    assert.notEqual(before[0]["ID3v2.4"], before[1]["ID3v2.4"], "mappers were shared already");

    assert.equal(await shareTagMappers(), true);
    assert.equal(await shareTagMappers(), true, "idempotent");
    const after = [await mappersOf(wav, "audio/wav"), await mappersOf(wav, "audio/wav")];
    for (const type of Object.keys(after[0])) {
      assert.equal(after[0][type], after[1][type], `${type}: a new mapper per parse`);
    }

    for (let i = 0; i < files.length; i++) {
      assert.deepEqual(await readTags(files[i]), fresh[i], files[i]);
    }
    assert.ok(fresh.some((r) => !r.ok) && fresh.some((r) => r.ok));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
