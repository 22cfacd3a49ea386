import assert from "node:assert/strict";
import {
  albumArtistName,
  albumFolder,
  albumFolderParts,
  albumName,
  artistName,
  cutUtf8,
  discCount,
  fitName,
  foldKey,
  genreName,
  type NameClaim,
  resolveCollisions,
  sanitizeName,
  titleName,
  trackFileName,
  trackStem,
  utf8Length,
  withCollisionSuffix,
  yearText,
} from "./naming.ts";

const bytes = (s: string) => new TextEncoder().encode(s).length;

Deno.test("fallbacks follow SPEC: albumartist -> artist -> Unknown Artist", () => {
  assert.equal(albumArtistName({ albumArtist: "AA", artist: "A" }), "AA");
  assert.equal(albumArtistName({ artist: "A" }), "A");
  assert.equal(albumArtistName({ albumArtist: "   ", artist: " A " }), "A");
  assert.equal(albumArtistName({}), "Unknown Artist");
  assert.equal(artistName({ albumArtist: "AA" }), "AA");
  assert.equal(albumName({}), "Unknown Album");
  assert.equal(albumName({ album: "X" }), "X");
  assert.equal(genreName({}), "Unknown Genre");
  assert.equal(genreName({ genre: "Jazz" }), "Jazz");
  assert.equal(yearText({}), undefined);
  assert.equal(yearText({ year: 0 }), undefined);
  assert.equal(yearText({ year: 1999 }), "1999");
  assert.equal(albumFolder({ album: "X", year: 1999 }), "X (1999)");
  assert.equal(albumFolder({ album: "X" }), "X");
});

Deno.test("title falls back to the source file name without extension", () => {
  assert.equal(titleName({ relPath: "a/b/03 Song.name.flac" }), "03 Song.name");
  assert.equal(titleName({ relPath: "noext" }), "noext");
  assert.equal(titleName({ relPath: "x/.hidden" }), ".hidden");
  assert.equal(titleName({ title: "T", relPath: "x.mp3" }), "T");
});

Deno.test("sanitizeName replaces slash and NUL, unhides dot names, trims blanks", () => {
  assert.equal(sanitizeName("AC/DC"), "AC_DC");
  assert.equal(sanitizeName("a\0b"), "a_b");
  // A leading "." becomes "_": nothing in the tree is hidden from players or `ls`.
  assert.equal(sanitizeName("."), "_");
  assert.equal(sanitizeName(".."), "_.");
  assert.equal(sanitizeName("..."), "_..");
  assert.equal(sanitizeName("...Baby One More Time", "mp3"), "_..Baby One More Time.mp3");
  assert.equal(sanitizeName(".hidden"), "_hidden");
  assert.equal(sanitizeName("a.b."), "a.b.");
  assert.equal(sanitizeName("  padded \t"), "padded");
  assert.equal(sanitizeName("line1\r\nline2"), "line1 line2");
  assert.equal(sanitizeName("bell\x07\x7f\x85end"), "bell end");
  assert.equal(sanitizeName(""), "_");
  assert.equal(sanitizeName(" \n "), "_");
  assert.equal(sanitizeName("title", "mp3"), "title.mp3");
  assert.equal(sanitizeName("", "mp3"), "_.mp3");
  assert.equal(sanitizeName("a/b", "fl/ac"), "a_b.fl_ac");
  // An unpaired surrogate would reach the kernel as U+FFFD anyway; say so in the name.
  assert.equal(sanitizeName("x\ud800y"), "x\ufffdy");
});

Deno.test("names are cut to 255 bytes keeping the extension and whole code points", () => {
  for (const ch of ["é", "日", "😀", "a"]) {
    const name = sanitizeName(ch.repeat(300), "flac");
    assert.ok(bytes(name) <= 255, `${ch}: ${bytes(name)} bytes`);
    assert.ok(name.endsWith(".flac"));
    assert.ok(name.isWellFormed(), "no split surrogate pair");
    const stem = name.slice(0, -".flac".length);
    assert.equal(stem, ch.repeat([...stem].length), "only whole characters");
    // Maximal: one more character would not fit.
    assert.ok(bytes(name) + bytes(ch) > 255);
  }
  const bare = sanitizeName("日".repeat(100));
  assert.equal(bytes(bare), 255);
  assert.equal(utf8Length("a😀é日"), 1 + 4 + 2 + 3);
  assert.equal(cutUtf8("a😀", 4), "a");
  assert.equal(cutUtf8("a😀", 5), "a😀");
  // A blank left at the end of the cut is trimmed too.
  const spaced = sanitizeName("x".repeat(250) + " yyyyyyy", "mp3");
  assert.equal(spaced, "x".repeat(250) + ".mp3");
});

Deno.test("collision suffix goes before the extension and stays within 255 bytes", () => {
  assert.equal(withCollisionSuffix("01 - A.flac", "flac", 2), "01 - A (2).flac");
  assert.equal(withCollisionSuffix("Album", "", 3), "Album (3)");
  const long = sanitizeName("é".repeat(300), "ogg");
  const suffixed = withCollisionSuffix(long, "ogg", 12);
  assert.ok(bytes(suffixed) <= 255);
  assert.ok(suffixed.endsWith("é (12).ogg"));
});

Deno.test("track names: NN - Title, D- only on multi-disc albums, no prefix without a number", () => {
  const t = { title: "Song", track: 3, disc: 2, relPath: "a/x.flac", ext: "flac" };
  assert.equal(trackStem(t, false), "03 - Song");
  assert.equal(trackStem(t, true), "2-03 - Song");
  assert.equal(trackStem({ ...t, disc: undefined }, true), "03 - Song");
  assert.equal(trackStem({ ...t, track: undefined }, true), "Song");
  assert.equal(trackStem({ ...t, track: 112 }, false), "112 - Song");
  assert.equal(trackFileName({ ...t, title: "A/B" }, false), "03 - A_B.flac");
  assert.equal(trackFileName({ relPath: "dir/raw name.mp3", ext: "mp3" }, false), "raw name.mp3");
});

Deno.test("disc count is the largest disc total or disc number of the album", () => {
  assert.equal(discCount([{ disc: 1 }, { disc: 1 }]), 1);
  assert.equal(discCount([{ disc: 1, discTotal: 2 }]), 2);
  assert.equal(discCount([{ disc: 1, discTotal: 1 }, { disc: 3 }]), 3);
  assert.equal(discCount([{}]), 1);
});

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) =>
    permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p])
  );
}

Deno.test("collision suffixes follow source path order, whatever the input order", () => {
  const claims: NameClaim[] = [
    { base: "01 - A.flac", ext: "flac", sourcePath: "/m/c.flac" },
    { base: "01 - A.flac", ext: "flac", sourcePath: "/m/a.flac" },
    { base: "01 - A (2).flac", ext: "flac", sourcePath: "/m/z.flac" },
    { base: "01 - A.flac", ext: "flac", sourcePath: "/m/b.flac" },
    { base: "02 - B.flac", ext: "flac", sourcePath: "/m/d.flac" },
  ];
  const expected = new Map([
    ["/m/a.flac", "01 - A.flac"],
    // "(2)" is a real title elsewhere: the suffix skips it.
    ["/m/b.flac", "01 - A (3).flac"],
    ["/m/c.flac", "01 - A (4).flac"],
    ["/m/z.flac", "01 - A (2).flac"],
    ["/m/d.flac", "02 - B.flac"],
  ]);
  for (const order of permutations(claims)) {
    const names = resolveCollisions(order);
    const got = new Map(order.map((c, i) => [c.sourcePath, names[i]]));
    assert.deepEqual(got, expected);
  }
});

Deno.test("a name held by a directory sends every file wanting it to a suffix", () => {
  const names = resolveCollisions(
    [{ base: "X", ext: "", sourcePath: "/b" }, { base: "X", ext: "", sourcePath: "/a" }],
    new Set(["X"]),
  );
  assert.deepEqual(names, ["X (3)", "X (2)"]);
});

Deno.test("fitName shortens the tag text and keeps the year, separators and extension", () => {
  const long = "Long Album ".repeat(40);
  const folder = fitName(albumFolderParts(long, "1999"));
  assert.equal(utf8Length(folder), 255);
  assert.ok(folder.endsWith(" (1999)"), folder);
  assert.ok(folder.startsWith("Long Album Long"));
  const albums = fitName([
    ...albumFolderParts(long, "1999"),
    { text: " - ", fixed: true },
    { text: "Short Artist" },
  ]);
  assert.ok(utf8Length(albums) <= 255);
  assert.ok(albums.endsWith(" (1999) - Short Artist"), albums);
  // Two long parts share the room.
  const both = fitName([{ text: "a".repeat(300) }, { text: " - ", fixed: true }, {
    text: "b".repeat(300),
  }], "flac");
  assert.equal(utf8Length(both), 255);
  assert.match(both, /^a{123} - b{124}\.flac$/);
  // Multi-byte text is cut at a code point boundary.
  const ue = fitName(albumFolderParts("ü".repeat(200), "2001"));
  assert.ok(ue.endsWith("ü (2001)") && utf8Length(ue) <= 255);
  // Short names are untouched; a leading dot is still unhidden.
  assert.equal(fitName(albumFolderParts("...Nothing", "1999")), "_..Nothing (1999)");
  assert.equal(fitName(albumFolderParts("Plain", undefined)), "Plain");
});

Deno.test("foldKey groups case and normalisation variants", () => {
  assert.equal(foldKey("Bj\u00f6rk"), foldKey("Bjo\u0308rk"));
  assert.equal(foldKey("The Beatles"), foldKey("the beatles"));
  assert.equal(foldKey("ROCK"), foldKey("rock"));
  assert.equal(foldKey("Stra\u00dfe"), foldKey("STRASSE"));
  assert.equal(foldKey("\u039f\u03a3"), foldKey("\u03bf\u03c2"));
  assert.notEqual(foldKey("Rock"), foldKey("Rock "));
  assert.notEqual(foldKey("Bjork"), foldKey("Bj\u00f6rk"));
});
