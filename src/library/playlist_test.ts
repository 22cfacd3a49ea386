import assert from "node:assert/strict";
import { decodePlaylist, isPlaylistName, parsePlaylist } from "./playlist.ts";

Deno.test("playlist entries resolve against the playlist's folder, in order", () => {
  const text = [
    "\uFEFF#EXTM3U",
    "#EXTINF:123,Artist - Title",
    "01 Song.mp3",
    "",
    "../Other/02 Song.flac",
    "/abs/path/03.ogg",
    "sub\\win\\04.mp3",
    "file:///music/with%20space/05.mp3",
    "C:\\Music\\06.mp3",
    "http://example.com/stream",
    "../../../../../escape.mp3",
    "  ./07.mp3  ",
  ].join("\r\n");
  assert.deepEqual(parsePlaylist(decodePlaylist(new TextEncoder().encode(text)), "/music/Lists"), [
    "/music/Lists/01 Song.mp3",
    "/music/Other/02 Song.flac",
    "/abs/path/03.ogg",
    "/music/Lists/sub/win/04.mp3",
    "/music/with space/05.mp3",
    "C:\\Music\\06.mp3",
    "http://example.com/stream",
    "../../../../../escape.mp3",
    "/music/Lists/07.mp3",
  ]);
});

Deno.test("playlist text is UTF-8 when valid, else Windows-1252", () => {
  assert.equal(decodePlaylist(new TextEncoder().encode("Björk.mp3")), "Björk.mp3");
  assert.equal(decodePlaylist(new Uint8Array([0x42, 0x6a, 0xf6, 0x72, 0x6b])), "Björk");
  assert.ok(isPlaylistName("a.M3U") && isPlaylistName("b.m3u8") && !isPlaylistName("c.pls"));
});
