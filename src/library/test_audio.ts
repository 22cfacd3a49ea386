/**
 * Test audio for the library's tests: real MP3s built from silent MPEG frames made once by ffmpeg
 * plus an ID3v2.4 tag written here (fast enough for hundreds of distinct files), and any format
 * straight from ffmpeg for the few tests that need one.
 */

let frames: Uint8Array | undefined;

async function ffmpeg(args: string[]): Promise<void> {
  const out = await new Deno.Command("ffmpeg", {
    args: ["-v", "error", "-y", ...args],
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`ffmpeg failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** Silent MPEG-1 layer III frames (no tag, no Xing header), made once per process. */
async function silentFrames(): Promise<Uint8Array> {
  if (frames) return frames;
  const dir = await Deno.makeTempDir({ prefix: "musicfs-testaudio-" });
  try {
    const path = `${dir}/silence.mp3`;
    await ffmpeg([
      "-f",
      "lavfi",
      "-i",
      "anullsrc=r=44100:cl=mono",
      "-t",
      "0.1",
      "-map_metadata",
      "-1",
      "-write_xing",
      "0",
      "-id3v2_version",
      "0",
      path,
    ]);
    frames = await Deno.readFile(path);
    return frames;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Tags the test helpers can write. */
export interface TestTags {
  title?: string;
  artist?: string;
  album?: string;
  albumArtist?: string;
  genre?: string;
  track?: number;
  year?: number;
}

function id3v24(tags: TestTags): Uint8Array {
  const enc = new TextEncoder();
  const frames: Uint8Array[] = [];
  const add = (id: string, value: string | undefined) => {
    if (value === undefined) return;
    const body = enc.encode(value);
    const f = new Uint8Array(10 + 1 + body.length);
    f.set(enc.encode(id), 0);
    const size = 1 + body.length;
    f.set([(size >> 21) & 0x7f, (size >> 14) & 0x7f, (size >> 7) & 0x7f, size & 0x7f], 4);
    f[10] = 3; // UTF-8
    f.set(body, 11);
    frames.push(f);
  };
  add("TIT2", tags.title);
  add("TPE1", tags.artist);
  add("TALB", tags.album);
  add("TPE2", tags.albumArtist);
  add("TCON", tags.genre);
  add("TRCK", tags.track?.toString());
  add("TDRC", tags.year?.toString());
  const size = frames.reduce((n, f) => n + f.length, 0);
  const out = new Uint8Array(10 + size);
  out.set([
    0x49,
    0x44,
    0x33,
    4,
    0,
    0,
    (size >> 21) & 0x7f,
    (size >> 14) & 0x7f,
    (size >> 7) & 0x7f,
    size & 0x7f,
  ]);
  let at = 10;
  for (const f of frames) {
    out.set(f, at);
    at += f.length;
  }
  return out;
}

/** The bytes of a playable MP3 carrying `tags` in an ID3v2.4 tag. */
export async function mp3Bytes(tags: TestTags): Promise<Uint8Array> {
  const audio = await silentFrames();
  const tag = id3v24(tags);
  const out = new Uint8Array(tag.length + audio.length);
  out.set(tag);
  out.set(audio, tag.length);
  return out;
}

/** Write a playable MP3 with `tags` at `path`, creating its directory. */
export async function writeMp3(path: string, tags: TestTags): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(path, await mp3Bytes(tags));
}

/** Write `path` (format from its extension) with ffmpeg, tagged with `tags`. */
export async function writeWithFfmpeg(path: string, tags: TestTags): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const meta: string[] = [];
  const add = (k: string, v: string | number | undefined) => {
    if (v !== undefined) meta.push("-metadata", `${k}=${v}`);
  };
  add("title", tags.title);
  add("artist", tags.artist);
  add("album", tags.album);
  add("album_artist", tags.albumArtist);
  add("genre", tags.genre);
  add("track", tags.track);
  add("date", tags.year);
  const codec = path.endsWith(".ogg")
    ? ["-c:a", "libvorbis"]
    : path.endsWith(".m4a")
    ? ["-c:a", "aac"]
    : [];
  await ffmpeg([
    "-f",
    "lavfi",
    "-i",
    "anullsrc=r=44100:cl=mono",
    "-t",
    "0.1",
    ...meta,
    ...codec,
    path,
  ]);
}
