/**
 * `.m3u`/`.m3u8` playlists of a library: reading one into the absolute source paths it names.
 * Hand-written: the npm m3u parsers target HLS streams (segments, tags, URLs) and none resolves
 * local entries (relative paths, `file://` URLs, Windows separators) against a folder; what is
 * needed here is a dozen lines.
 */

/** Playlists bigger than this are refused (a real one of 100k entries is ~10 MB). */
export const MAX_PLAYLIST_BYTES = 32 * 1024 * 1024;

/** Whether a file name is a playlist the library exposes. */
export function isPlaylistName(name: string): boolean {
  const n = name.toLowerCase();
  return n.endsWith(".m3u") || n.endsWith(".m3u8");
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("windows-1252");

/** Playlist text: UTF-8 when it is valid UTF-8 (always for `.m3u8`), else Windows-1252. */
export function decodePlaylist(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes).replace(/^\uFEFF/, "");
  } catch {
    return latin1.decode(bytes);
  }
}

/** `a/./b/../c` -> `a/c`, for an absolute path; undefined when `..` climbs above `/`. */
function normalize(abs: string): string | undefined {
  const out: string[] = [];
  for (const part of abs.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) return undefined;
      out.pop();
    } else out.push(part);
  }
  return "/" + out.join("/");
}

/**
 * The entries of a playlist, in order: each an absolute, normalised path when the line names a
 * local file (absolute, relative to `dir`, or a `file://` URL; `\` read as `/`), else the raw
 * line (a Windows drive path, an http URL): it then matches no track and is reported missing.
 * Comment lines (`#EXTINF`, `#EXTM3U`...) and blank lines are skipped.
 * @param dir the absolute folder holding the playlist
 */
export function parsePlaylist(text: string, dir: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r\n|\n|\r/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    let path = line;
    if (/^file:\/\//i.test(path)) {
      try {
        path = decodeURIComponent(new URL(path).pathname);
      } catch {
        out.push(line);
        continue;
      }
    } else if (/^[a-z][a-z0-9+.-]*:/i.test(path)) {
      // `C:\Music\x.mp3` or `http://...`: nothing of this machine's library.
      out.push(line);
      continue;
    }
    path = path.replaceAll("\\", "/");
    const abs = normalize(path.startsWith("/") ? path : `${dir}/${path}`);
    out.push(abs ?? line);
  }
  return out;
}
