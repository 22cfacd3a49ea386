import assert from "node:assert/strict";
import type { IAudioMetadata } from "music-metadata";
import {
  AUDIO_FORMATS,
  BROKEN_KINDS,
  encodeBroken,
  encodeTrack,
  FORMAT_EXT,
} from "../../tests/fixtures/mod.ts";
import { extensionOf, isAudioName, normaliseTags, readTags } from "./tags.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-tags-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const FULL = {
  artist: "Ärtist",
  albumArtist: "Album Artist",
  album: "Albüm",
  title: "Tïtle 日本語",
  track: 3,
  trackTotal: 12,
  disc: 2,
  discTotal: 2,
  year: 1987,
  genre: "Synthpop",
  compilation: true,
};

Deno.test("readTags reads every tag of every fixture format", async () => {
  await withDir(async (dir) => {
    for (const format of AUDIO_FORMATS) {
      const path = `${dir}/${format}.${FORMAT_EXT[format]}`;
      await Deno.writeFile(path, encodeTrack(format, FULL));
      const r = await readTags(path);
      assert.ok(r.ok, `${format}: ${!r.ok && r.reason}`);
      // WAV's id3 chunk and ID3v2.3 carry all of them too; m4a has no album-artist-less quirks.
      assert.deepEqual({
        ...r.tags,
        format: undefined,
        bitrate: undefined,
        sampleRate: undefined,
        duration: undefined,
      }, {
        ...FULL,
        genres: [FULL.genre!],
        format: undefined,
        bitrate: undefined,
        sampleRate: undefined,
        duration: undefined,
      }, format);
      assert.ok(r.tags.format, `${format} has a format`);
      assert.ok((r.tags.sampleRate ?? 0) > 0, `${format} has a sample rate`);
    }
  });
});

Deno.test("readTags gives untagged files no tags but a format", async () => {
  await withDir(async (dir) => {
    for (const format of AUDIO_FORMATS) {
      const path = `${dir}/${format}.${FORMAT_EXT[format]}`;
      await Deno.writeFile(path, encodeTrack(format, {}));
      const r = await readTags(path);
      assert.ok(r.ok, `${format}: ${!r.ok && r.reason}`);
      for (
        const k of ["artist", "album", "title", "track", "year", "genre", "compilation"] as const
      ) {
        assert.equal(r.tags[k], undefined, `${format}: ${k}`);
      }
    }
  });
});

Deno.test("readTags rejects every kind of broken file with a reason, never throwing", async () => {
  await withDir(async (dir) => {
    for (let seed = 0; seed < 12; seed++) {
      for (const kind of BROKEN_KINDS) {
        const { bytes, ext } = encodeBroken(kind, seed);
        const path = `${dir}/${kind}-${seed}.${ext}`;
        await Deno.writeFile(path, bytes);
        const r = await readTags(path);
        assert.equal(r.ok, false, `${kind} ${ext} (seed ${seed}) was accepted`);
        assert.ok(!r.ok && r.reason.trim().length > 0);
      }
    }
    const missing = await readTags(`${dir}/missing.mp3`);
    assert.deepEqual(missing.ok, false);
    assert.ok(!missing.ok && missing.transient, "a file that cannot be opened is re-checked later");
  });
});

Deno.test("readTags rejects files cut short after their tags", async () => {
  await withDir(async (dir) => {
    for (const format of AUDIO_FORMATS) {
      const full = encodeTrack(format, FULL, { durationMs: 3000 });
      for (const keep of [0.2, 0.35, 0.5, 0.61, 0.73, 0.8, 0.88, 0.93, 0.97]) {
        const path = `${dir}/${format}-${keep}.${FORMAT_EXT[format]}`;
        await Deno.writeFile(path, full.slice(0, Math.floor(full.length * keep)));
        const r = await readTags(path);
        assert.equal(r.ok, false, `${format} cut to ${keep * 100}% was accepted`);
      }
    }
  });
});

Deno.test("readTags finds the real format of a mislabelled file", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/really-flac.mp3`, encodeTrack("flac", { title: "Flac inside" }));
    const r = await readTags(`${dir}/really-flac.mp3`);
    assert.ok(r.ok, !r.ok ? r.reason : "");
    assert.equal(r.tags.format, "FLAC");
    assert.equal(r.tags.title, "Flac inside");
  });
});

Deno.test("normaliseTags trims, drops empty values, takes the year from the date and every genre", () => {
  const meta = {
    common: {
      track: { no: 4, of: null },
      disk: { no: null, of: 3 },
      title: "  Padded \0\0",
      artist: "   ",
      artists: ["  "],
      albumartist: "",
      album: "\tAlbum\n",
      date: "1999-12-31",
      genre: [" ", "Jazz", "Rock"],
      compilation: false,
    },
    format: { container: "Ogg", codec: "Opus", sampleRate: 48000, bitrate: 0, duration: Infinity },
  } as unknown as IAudioMetadata;
  assert.deepEqual(normaliseTags(meta), {
    title: "Padded",
    album: "Album",
    track: 4,
    discTotal: 3,
    year: 1999,
    genre: "Jazz",
    genres: ["Jazz", "Rock"],
    compilation: false,
    format: "Ogg/Opus",
    sampleRate: 48000,
  });
});

Deno.test("audio file names are recognised by extension, case-insensitively", () => {
  assert.equal(extensionOf("Dir.v2/Song.FLAC"), "flac");
  assert.equal(extensionOf("Dir.v2/README"), "");
  assert.equal(extensionOf(".mp3"), "");
  assert.ok(
    isAudioName("a.Mp3") && isAudioName("b.opus") && isAudioName("c.m4a") && isAudioName("d.aiff"),
  );
  assert.ok(!isAudioName("cover.jpg") && !isAudioName("notes.txt") && !isAudioName("playlist.m3u"));
});
