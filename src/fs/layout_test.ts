import assert from "node:assert/strict";
import {
  DEFAULT_LAYOUT,
  LayoutError,
  type LayoutTrack,
  parseLayout,
  renderLayout,
} from "./layout.ts";
import { albumArtistName, albumFolder, sanitizeName, trackFileName } from "./naming.ts";

const track = (over: Partial<LayoutTrack> = {}): LayoutTrack => ({
  artist: "Artist",
  albumArtist: "Album Artist",
  album: "Album",
  title: "Title",
  track: 1,
  disc: 1,
  year: 1999,
  genre: "Rock",
  relPath: "src/file name.flac",
  ext: "flac",
  ...over,
});

Deno.test("default layout reproduces SPEC's /Artists shape", () => {
  const layout = parseLayout(DEFAULT_LAYOUT);
  const cases: [Partial<LayoutTrack>, boolean][] = [
    [{}, false],
    [{ disc: 2 }, true],
    [{ disc: 2 }, false],
    [{ disc: undefined }, true],
    [{ track: undefined, disc: 2 }, true],
    [{ year: undefined }, false],
    [{ albumArtist: undefined }, false],
    [{ albumArtist: undefined, artist: undefined }, false],
    [{ album: undefined, title: undefined }, false],
    [{ title: "A/B", album: "..", albumArtist: " X " }, false],
    [{ title: "é".repeat(200) }, true],
    [{ track: 7, disc: 3, year: 2020 }, true],
  ];
  for (const [over, multi] of cases) {
    const t = track(over);
    const want = [
      sanitizeName(albumArtistName(t)),
      sanitizeName(albumFolder(t)),
      trackFileName(t, multi),
    ];
    assert.deepEqual(renderLayout(layout, t, multi), want, JSON.stringify(over));
  }
  assert.deepEqual(renderLayout(layout, track({ disc: 2, track: 5 }), true), [
    "Album Artist",
    "Album (1999)",
    "2-05 - Title.flac",
  ]);
  assert.deepEqual(renderLayout(layout, track({ track: undefined, year: undefined }), false), [
    "Album Artist",
    "Album",
    "Title.flac",
  ]);
});

Deno.test("unknown layout field is a LayoutError naming it and the known fields", () => {
  assert.throws(() => parseLayout("{albumartist}/{foo}/{title}"), (e) => {
    assert.ok(e instanceof LayoutError);
    assert.equal(e.name, "LayoutError");
    assert.equal(
      e.message,
      "Unknown layout field: {foo} (known: artist, albumartist, album, title, track, disc, year, genre, ext, artistsort, albumartistsort)",
    );
    return true;
  });
});

Deno.test("malformed layouts are rejected with a reason", () => {
  const bad: [string, RegExp][] = [
    ["", /Empty layout/],
    ["{artist}//{title}", /Empty path segment/],
    ["/{title}", /Empty path segment/],
    ["{title}/", /Empty path segment/],
    ["{title", /Unclosed \{/],
    ["title}", /Unmatched \}/],
    ["{album} ({year}/{title}", /Unclosed \(/],
    ["{album})/{title}", /Unmatched \)/],
    ["{title:02}", /Zero padding needs a number field: \{title:02\}/],
    ["{track:x} {title}", /Bad format in layout field: \{track:x\}/],
    ["{artist}/fixed name", /file name part of the layout uses no field/],
  ];
  for (const [template, re] of bad) {
    assert.throws(
      () => parseLayout(template),
      (e) => e instanceof LayoutError && re.test(e.message),
      template,
    );
  }
});

Deno.test("layout groups collapse when all their fields are missing", () => {
  const l = parseLayout("{album} ({year}) [x]/{title}");
  assert.deepEqual(renderLayout(l, track(), false), ["Album (1999) [x]", "Title.flac"]);
  assert.deepEqual(renderLayout(l, track({ year: undefined }), false), ["Album [x]", "Title.flac"]);
  const g = parseLayout("{artist} ({genre}, {year})/{title}");
  assert.deepEqual(renderLayout(g, track({ genre: undefined }), false)[0], "Artist (1999)");
  assert.deepEqual(
    renderLayout(g, track({ genre: undefined, year: undefined }), false)[0],
    "Artist",
  );
  // A group without fields is plain text.
  const lit = parseLayout("{album} (live)/{title}");
  assert.deepEqual(renderLayout(lit, track(), false)[0], "Album (live)");
});

Deno.test("missing track and disc drop the text after them; other fields fall back", () => {
  const l = parseLayout("{genre}/{year}/{track:03}. {title}");
  assert.deepEqual(renderLayout(l, track({ track: 4 }), false), [
    "Rock",
    "1999",
    "004. Title.flac",
  ]);
  assert.deepEqual(
    renderLayout(
      l,
      track({ track: undefined, genre: undefined, year: undefined, title: undefined }),
      false,
    ),
    ["Unknown Genre", "Unknown Year", "file name.flac"],
  );
});

Deno.test("layout: case-insensitive fields, .{ext} not doubled, ext usable, empty dirs skipped", () => {
  const l = parseLayout("{EXT}/{AlbumArtist}/{disc}/{title}.{ext}");
  assert.deepEqual(renderLayout(l, track({ disc: 2 }), true), [
    "flac",
    "Album Artist",
    "2",
    "Title.flac",
  ]);
  // Single-disc album: the {disc} level is left out instead of making an empty name.
  assert.deepEqual(renderLayout(l, track(), false), ["flac", "Album Artist", "Title.flac"]);
});

Deno.test("each rendered segment is sanitised", () => {
  const l = parseLayout("{artist} - {album}/{title}");
  const out = renderLayout(
    l,
    track({ artist: "AC/DC", album: "x".repeat(300), title: ".." }),
    false,
  );
  assert.equal(out[0].startsWith("AC_DC - xxx"), true);
  assert.equal(new TextEncoder().encode(out[0]).length, 255);
  assert.equal(out[1], "_..flac");
  const bare = parseLayout("{title}");
  assert.deepEqual(renderLayout(bare, track({ title: " " }), false), ["file name.flac"]);
});

Deno.test("sort fields render the sort tags, with their fallbacks", () => {
  const l = parseLayout("{albumartistsort}/{artistsort} - {title}");
  assert.deepEqual(
    renderLayout(l, track({ albumArtistSort: "Beatles, The", artistSort: "Lennon, John" }), false),
    ["Beatles, The", "Lennon, John - Title.flac"],
  );
  // No sort tags: the album artist and artist names.
  assert.deepEqual(
    renderLayout(l, track({ albumArtistSort: undefined }), false)[0],
    "Album Artist",
  );
});

Deno.test("a long layout name keeps its year group and extension", () => {
  const l = parseLayout("{albumartist}/{album} ({year})/{track:02} - {title}");
  const out = renderLayout(l, track({ album: "y".repeat(400), title: "t".repeat(400) }), false);
  assert.ok(out[1].endsWith(" (1999)"), out[1]);
  assert.equal(new TextEncoder().encode(out[1]).length, 255);
  assert.ok(out[2].startsWith("01 - ttt") && out[2].endsWith(".flac"));
});
