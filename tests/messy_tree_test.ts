/**
 * Issue 10, the tree side, end to end: the "messy library" fixture mounted through the kernel,
 * and for each naming rule the folder it must give. Tracks are found by their
 * `user.musicfs.source` xattr, so every assertion names the source file it is about.
 */
import assert from "node:assert/strict";
import { makeMessyLibrary, type MessyLibrary } from "./fixtures/messy.ts";
import { getXattr, needsFuse, waitFor } from "./support/helpers.ts";
import { type DaemonDirs, daemonOptions, withDaemon, withDirs } from "./support/daemon.ts";

const SOURCE = "user.musicfs.source";
const encoder = new TextEncoder();
const VIEWS = ["Artists", "Albums", "Genres", "Years", "Playlists"];
const COVER = /\/cover\.(?:jpg|jpeg|png|gif|webp|bmp)$/;

/** Every file of the mount (views only) with its source path and inode. */
interface Seen {
  path: string;
  source: string | null;
  ino: number;
}

async function walk(dir: string, out: Seen[], names: string[]): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    names.push(e.name);
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) await walk(p, out, names);
    else if (e.isFile) {
      const st = await Deno.stat(p);
      out.push({ path: p, source: await getXattr(p, SOURCE), ino: st.ino! });
    }
  }
}

async function survey(mnt: string): Promise<{ files: Seen[]; names: string[] }> {
  const files: Seen[] = [];
  const names: string[] = [];
  for (const v of VIEWS) await walk(`${mnt}/${v}`, files, names);
  return { files, names };
}

/** The mount paths of a source file under one view. */
function placesOf(files: Seen[], mnt: string, lib: MessyLibrary, rel: string, view: string) {
  const src = `${Deno.realPathSync(lib.root)}/${rel}`;
  return files.filter((f) =>
    f.source === src && f.path.startsWith(`${mnt}/${view}/`) && !COVER.test(f.path)
  );
}

function dirOf(p: string): string {
  return p.slice(0, p.lastIndexOf("/"));
}

/** The one /Artists folder of each of `rels`; asserts there is exactly one path per track. */
function artistFolders(files: Seen[], mnt: string, lib: MessyLibrary, rels: string[]): string[] {
  return rels.map((rel) => {
    const at = placesOf(files, mnt, lib, rel, "Artists");
    assert.equal(at.length, 1, `exactly one /Artists path for ${rel}: ${at.map((x) => x.path)}`);
    return dirOf(at[0].path).slice(mnt.length);
  });
}

async function checkNamesOfCollisions(
  dirs: DaemonDirs,
  lib: MessyLibrary,
  want: [string, string][],
): Promise<void> {
  const real = Deno.realPathSync(lib.root);
  for (const [name, rel] of want) {
    const p = `${dirs.mnt}/Artists/Collider/Same Album (2010)/${name}`;
    assert.equal(await getXattr(p, SOURCE), `${real}/${rel}`, `${name} serves ${rel}`);
  }
}

Deno.test(
  "messy library: grouping, albums, genres, names that stay put, covers and playlists in the mount",
  needsFuse,
  async () => {
    await withDirs(async (dirs) => {
      const lib = await makeMessyLibrary(dirs.lib);
      // The cases below are all there (a fixture change must not empty a loop silently).
      assert.ok(lib.groups.length >= 4 && lib.albums.length >= 4 && lib.covers.length >= 5);
      assert.equal(lib.playlists.length, 2);
      assert.ok(lib.tracks.filter((t) => (t.expect.genres?.length ?? 0) > 1).length >= 3);
      assert.ok(lib.tracks.filter((t) => t.expect.albumArtistSort).length >= 3);
      assert.equal(lib.collisions.length, 2);
      let before: Seen[] = [];
      await withDaemon(daemonOptions(dirs), async (d) => {
        await d.waitScanDone(120_000);
        const mnt = dirs.mnt;
        const { files, names } = await survey(mnt);

        // Rule 6: nothing visible starts with "."; every name fits in 255 bytes.
        for (const n of names) {
          assert.ok(!n.startsWith("."), `hidden name in the mount: ${n}`);
          assert.ok(encoder.encode(n).length <= 255, `name over 255 bytes: ${n}`);
        }
        const top = [...Deno.readDirSync(mnt)].map((e) => e.name).filter((n) => n[0] === ".");
        assert.deepEqual(top.sort(), [".musicfs", ".search"]);
        const baby = artistFolders(files, mnt, lib, ["Singles/Baby One More Time.mp3"])[0];
        assert.ok(
          files.some((f) => f.path === `${mnt}${baby}/_..Baby One More Time.mp3`),
          "the title starting with ... is a visible file",
        );
        const [long] = artistFolders(files, mnt, lib, ["Long/01 - Long.mp3"]);
        const longName = long.split("/").pop()!;
        assert.ok(longName.endsWith(" (1970)"), `truncation keeps the year: ${longName}`);
        assert.ok(encoder.encode(longName).length <= 255);

        // Rule 3: one folder per artist / album artist / album / genre.
        for (const g of lib.groups) {
          if (g.kind === "genre") {
            const genres = new Set(
              g.tracks.flatMap((rel) =>
                placesOf(files, mnt, lib, rel, "Genres").map((f) =>
                  f.path.slice(`${mnt}/Genres/`.length).split("/")[0]
                )
              ),
            );
            assert.equal(genres.size, 1, `one genre folder for ${g.spellings}: ${[...genres]}`);
            assert.ok(g.spellings.includes([...genres][0]), "a spelling the tracks use");
            continue;
          }
          const folders = artistFolders(files, mnt, lib, g.tracks);
          const level = g.kind === "album" ? 3 : 2;
          const distinct = new Set(folders.map((f) => f.split("/").slice(0, level + 1).join("/")));
          assert.equal(
            distinct.size,
            1,
            `one folder for ${g.spellings.join(" / ")}: ${[...distinct]}`,
          );
        }
        // NFC and NFD Björk: one folder, shown in NFC.
        assert.ok(files.some((f) => f.path.startsWith(`${mnt}/Artists/Bj\u00f6rk/`)));
        // The majority spelling: "The Beatles" (2 tracks) over "the beatles" (1).
        assert.ok(files.some((f) => f.path.startsWith(`${mnt}/Artists/The Beatles/Abbey Road`)));

        // Rule 4: an album is (album artist, album), with its most common year.
        for (const a of lib.albums) {
          const folders = new Set(artistFolders(files, mnt, lib, a.tracks));
          const want = `/Artists/${a.albumArtist}/${a.album}${a.year ? ` (${a.year})` : ""}`;
          assert.deepEqual([...folders], [want], `album ${a.album}`);
          const years = new Set(
            a.tracks.flatMap((rel) =>
              placesOf(files, mnt, lib, rel, "Years").map((f) =>
                f.path.slice(`${mnt}/Years/`.length).split("/")[0]
              )
            ),
          );
          assert.deepEqual([...years], [a.year ? String(a.year) : "Unknown Year"]);
        }

        // Rule 5: a track with several genres is under each, as the same inode.
        for (const t of lib.tracks.filter((t) => t.expect.genres && t.expect.genres.length > 1)) {
          const at = placesOf(files, mnt, lib, t.relPath, "Genres");
          const genres = at.map((f) => f.path.slice(`${mnt}/Genres/`.length).split("/")[0]);
          assert.deepEqual(genres.sort(), [...t.expect.genres!].sort(), t.relPath);
          const artist = placesOf(files, mnt, lib, t.relPath, "Artists")[0];
          for (const f of at) assert.equal(f.ino, artist.ino, `same inode: ${f.path}`);
          assert.equal((await Deno.stat(artist.path)).nlink, 3 + at.length);
        }

        // Rule 8: covers, with their exact bytes.
        for (const c of lib.covers) {
          const rels = lib.tracks.filter((t) => c.trackDirs.includes(dirOf(t.relPath)));
          assert.ok(rels.length > 0, `tracks of ${c.trackDirs}`);
          const [folder] = new Set(artistFolders(files, mnt, lib, rels.map((t) => t.relPath)));
          const cover = files.filter((f) =>
            dirOf(f.path) === `${mnt}${folder}` &&
            /\/cover\.[a-z]+$/.test(f.path)
          );
          assert.equal(cover.length, 1, `one cover in ${folder}`);
          const bytes = await Deno.readFile(cover[0].path);
          if (c.file) {
            assert.deepEqual(bytes, await Deno.readFile(`${lib.root}/${c.file}`), c.file);
          } else {
            assert.deepEqual(
              bytes,
              c.embedded!.bytes,
              `embedded picture of ${c.embedded!.relPath}`,
            );
            assert.equal(
              cover[0].path.split(".").pop(),
              c.embedded!.mime === "image/png" ? "png" : "jpg",
            );
            assert.equal((await Deno.stat(cover[0].path)).size, c.embedded!.bytes.length);
            // Not a second copy of the track: it names the track as its holder instead.
            assert.equal(cover[0].source, null);
            assert.equal(
              await getXattr(cover[0].path, "user.musicfs.embedded-in"),
              `${Deno.realPathSync(lib.root)}/${c.embedded!.relPath}`,
            );
          }
        }

        // Rule 9: playlists, entries resolving to the right files, in order.
        const problems = await Deno.readTextFile(`${mnt}/.musicfs/problems.txt`);
        const real = Deno.realPathSync(lib.root);
        for (const p of lib.playlists) {
          const name = p.relPath.split("/").pop()!.replace(/\.m3u8?$/, ".m3u8");
          const text = await Deno.readTextFile(`${mnt}/Playlists/${name}`);
          const entries = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
          const sources = await Promise.all(
            entries.map((e) => getXattr(`${mnt}/Playlists/${e}`, SOURCE)),
          );
          assert.deepEqual(sources, p.entries.map((rel) => `${real}/${rel}`), p.relPath);
          for (const gone of p.dangling) {
            const file = gone.split(/[\\/]/).pop()!;
            assert.ok(
              problems.split("\n").some((l) =>
                l.startsWith("playlist entry not found:") && l.includes(p.relPath) &&
                l.includes(file)
              ),
              `problems.txt lists ${gone} of ${p.relPath}`,
            );
          }
        }

        // Rule 6: names stay put when a file that sorts first arrives while mounted.
        await checkNamesOfCollisions(dirs, lib, [
          ["01 - Same.mp3", lib.collisions[0]],
          ["01 - Same (2).mp3", lib.collisions[1]],
        ]);
        const later = await lib.addLater();
        const laterPath = `${mnt}/Artists/Collider/Same Album (2010)/01 - Same (3).mp3`;
        await waitFor(
          async () => (await getXattr(laterPath, SOURCE).catch(() => null)) !== null,
          30_000,
          "the file added later",
        );
        await checkNamesOfCollisions(dirs, lib, [
          ["01 - Same.mp3", lib.collisions[0]],
          ["01 - Same (2).mp3", lib.collisions[1]],
          ["01 - Same (3).mp3", later.relPath],
        ]);
        before = (await survey(mnt)).files;
      });

      // ...and across a restart (names come from library.db, not from path order). The restart
      // serves the tree from library.db's rows: the same paths, sources and inodes as the tree
      // in memory served, for this library's odd names, encodings, collisions and covers.
      const debug = { args: ["--log-level", "debug"] };
      await withDaemon(daemonOptions(dirs, debug), async (d) => {
        assert.ok(before.length > lib.tracks.length, "every view was surveyed");
        assert.match(d.stderr, /checked in \d+ ms; serving the stored tree/);
        const byPath = (a: Seen, b: Seen) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
        assert.deepEqual((await survey(dirs.mnt)).files.sort(byPath), before.sort(byPath));
        await d.waitScanDone(120_000);
        await checkNamesOfCollisions(dirs, lib, [
          ["01 - Same.mp3", lib.collisions[0]],
          ["01 - Same (2).mp3", lib.collisions[1]],
          ["01 - Same (3).mp3", "Collide/A/01 - Same.mp3"],
        ]);
      });

      // Rule 5: sort names as layout fields.
      const layout = "{albumartistsort}/{album}/{track:02} - {title}";
      await withDaemon(daemonOptions(dirs, { args: ["--layout", layout] }), async (d) => {
        await d.waitScanDone(120_000);
        for (const t of lib.tracks.filter((t) => t.expect.albumArtistSort)) {
          const src = await Deno.readDir(`${dirs.mnt}/Artists/${t.expect.albumArtistSort}`);
          const albums = [];
          for await (const e of src) albums.push(e.name);
          assert.equal(albums.length, 1, `${t.expect.albumArtistSort}: ${albums}`);
        }
      });
    });
  },
);
