/**
 * `musicfs mount` end to end (issue 3): the real daemon as a child process serving a generated
 * library through the kernel. Only async file APIs touch the mount.
 */
import assert from "node:assert/strict";
import {
  type FixtureLibrary,
  type GeneratedTrack,
  makeLibrary,
  writeTrack,
} from "./fixtures/mod.ts";
import { getXattr, isMounted, needsFuse, waitFor } from "./support/helpers.ts";
import {
  type DaemonDirs,
  daemonDirs,
  daemonOptions,
  exists,
  musicfs,
  startDaemon,
  withDaemon,
  withDirs,
} from "./support/daemon.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

const encoder = new TextEncoder();
const byteLength = (s: string) => encoder.encode(s).length;
const pad2 = (n: number) => String(n).padStart(2, "0");
const SOURCE_XATTR = "user.musicfs.source";
const VIEWS = ["Artists", "Albums", "Genres", "Years"] as const;
type View = typeof VIEWS[number];

async function sha256File(path: string): Promise<string> {
  const data = await Deno.readFile(path);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Run `fn` over `items`, `n` at a time. */
async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

interface Walked {
  /** Paths relative to the walked root. */
  files: string[];
  dirs: string[];
  symlinks: string[];
}

/** Everything below `root` (async readdir only). */
async function walk(root: string): Promise<Walked> {
  const out: Walked = { files: [], dirs: [], symlinks: [] };
  const visit = async (rel: string) => {
    const subdirs: string[] = [];
    for await (const e of Deno.readDir(rel === "" ? root : `${root}/${rel}`)) {
      const p = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) {
        out.dirs.push(p);
        subdirs.push(p);
      } else if (e.isSymlink) out.symlinks.push(p);
      else out.files.push(p);
    }
    await Promise.all(subdirs.map(visit));
  };
  await visit("");
  return out;
}

function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

function fileStem(relPath: string): string {
  const base = basename(relPath);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * SPEC.md section 2 names, as far as the fixtures need them: tag text NFC-normalised (issue 10),
 * `/` -> `_`, trimmed, a leading `.` -> `_`.
 */
function san(s: string): string {
  const n = s.normalize("NFC").replace(/[/\0]/g, "_").trim();
  return n.startsWith(".") ? `_${n.slice(1)}` : n;
}

/** Where a track must appear, worked out from its tags alone (SPEC.md section 2). */
interface Expected {
  /** Album folder in each view, relative to the mount. */
  dirs: Record<View, string>;
  /** `[D-]NN - Title` or `Title`, sanitised, without extension. */
  stem: string;
}

/** Grouping key: NFC and case folded (README: one artist, one folder). */
function fold(s: string): string {
  return s.normalize("NFC").toUpperCase().toLowerCase().normalize("NFC");
}

/** The most common spelling; ties: a leading capital, then fewer capitals, then code order. */
function majority(spellings: string[]): string {
  const counts = new Map<string, number>();
  for (const s of spellings) {
    counts.set(s.normalize("NFC"), (counts.get(s.normalize("NFC")) ?? 0) + 1);
  }
  const caps = (s: string) => [...s].filter((c) => c !== c.toLowerCase()).length;
  const lead = (s: string) => s !== "" && s[0] !== s[0].toLowerCase();
  return [...counts].sort(([a, m], [b, n]) =>
    n - m || Number(lead(b)) - Number(lead(a)) || caps(a) - caps(b) || (a < b ? -1 : a > b ? 1 : 0)
  )[0][0];
}

function albumArtistOf(t: GeneratedTrack): string {
  return t.tags.albumArtist ?? t.tags.artist ?? "Unknown Artist";
}

function albumKey(t: GeneratedTrack): string {
  return `${fold(albumArtistOf(t))}\0${fold(t.tags.album ?? "Unknown Album")}`;
}

function expectations(lib: FixtureLibrary): Map<GeneratedTrack, Expected> {
  const albums = new Map<string, GeneratedTrack[]>();
  const artists = new Map<string, string[]>();
  const genres = new Map<string, string[]>();
  for (const t of lib.good) {
    const k = albumKey(t);
    albums.set(k, [...albums.get(k) ?? [], t]);
    const a = fold(albumArtistOf(t));
    artists.set(a, [...artists.get(a) ?? [], albumArtistOf(t)]);
    const g = t.tags.genre ?? "Unknown Genre";
    genres.set(fold(g), [...genres.get(fold(g)) ?? [], g]);
  }
  const out = new Map<GeneratedTrack, Expected>();
  for (const t of lib.good) {
    const tracks = albums.get(albumKey(t))!;
    const aa = majority(artists.get(fold(albumArtistOf(t)))!);
    const album = majority(tracks.map((x) => x.tags.album ?? "Unknown Album"));
    // The album's year: the most common one of its tracks, ties to the earliest.
    const years = new Map<number, number>();
    for (const x of tracks) {
      if (x.tags.year) years.set(x.tags.year, (years.get(x.tags.year) ?? 0) + 1);
    }
    const year = [...years].sort(([a, m], [b, n]) => n - m || a - b)[0]?.[0];
    const folder = year === undefined ? album : `${album} (${year})`;
    const title = t.tags.title ?? fileStem(t.relPath);
    const multi = Math.max(...tracks.map((x) =>
      Math.max(1, x.tags.disc ?? 0, x.tags.discTotal ?? 0)
    )) > 1;
    const stem = t.tags.track === undefined
      ? title
      : `${multi && t.tags.disc ? `${t.tags.disc}-` : ""}${pad2(t.tags.track)} - ${title}`;
    const genre = majority(genres.get(fold(t.tags.genre ?? "Unknown Genre"))!);
    out.set(t, {
      dirs: {
        Artists: `Artists/${san(aa)}/${san(folder)}`,
        Albums: `Albums/${san(`${folder} - ${aa}`)}`,
        Genres: `Genres/${san(genre)}/${san(aa)}/${san(folder)}`,
        Years: `Years/${year ?? "Unknown Year"}/${san(`${aa} - ${album}`)}`,
      },
      stem: san(stem),
    });
  }
  return out;
}

/** Every path component obeys the name rules. */
function assertNameRules(path: string): void {
  for (const c of path.split("/")) {
    assert.ok(c.length > 0, `empty component in ${path}`);
    assert.ok(!c.includes("\0"), `NUL in ${path}`);
    assert.ok(c !== "." && c !== "..", `dot name in ${path}`);
    assert.ok(byteLength(c) <= 255, `component longer than 255 bytes in ${path}`);
    assert.equal(c, c.trim(), `untrimmed component in ${JSON.stringify(path)}`);
  }
}

/** A file name a track may get: `<stem>.<ext>`, or with a collision suffix ` (n)`. */
function assertTrackName(
  name: string,
  exp: Expected,
  ext: string,
  renamed: Set<string>,
  path: string,
) {
  // Titles are compared in NFC: the library normalises tag text (issue 10, rule 2).
  name = name.normalize("NFC");
  const plain = `${exp.stem}.${ext}`;
  if (byteLength(plain) > 255) {
    assert.ok(byteLength(name) <= 255 && name.endsWith(`.${ext}`), `bad long name ${path}`);
    assert.ok(name.startsWith(exp.stem.slice(0, 40)), `${path} does not start like ${exp.stem}`);
    return;
  }
  if (name === plain) return;
  assert.match(
    name,
    new RegExp(`^${escapeRe(exp.stem)} \\(\\d+\\)\\.${escapeRe(ext)}$`),
    `${path}: expected ${plain}`,
  );
  assert.ok(renamed.has(`/${path}`), `collision suffix of /${path} not listed in problems.txt`);
}

/**
 * The whole tree against the fixture library: each good file exactly once per view, in the
 * folder its tags say, with a valid name, the source's bytes, size, mtime and mode 0444;
 * broken files only in problems.txt; nothing else from the library; covers where the source
 * folder has one.
 */
async function verifyTree(mnt: string, lib: FixtureLibrary): Promise<void> {
  const top: string[] = [];
  for await (const e of Deno.readDir(mnt)) top.push(e.name);
  assert.deepEqual(top.sort(), [
    ".musicfs",
    ".search",
    "Albums",
    "Artists",
    "Genres",
    "Playlists",
    "Years",
  ]);
  const problems = await Deno.readTextFile(`${mnt}/.musicfs/problems.txt`);
  const renamed = new Set(
    problems.split("\n").filter((l) => l.startsWith("renamed: ")).map((l) =>
      l.slice("renamed: ".length, l.search(/ \(name (?:was )?taken: /))
    ),
  );
  const unreadable = new Set(
    problems.split("\n").filter((l) => l.startsWith("unreadable: ")).map((l) =>
      l.slice("unreadable: ".length, l.indexOf(": ", "unreadable: ".length))
    ),
  );
  for (const b of lib.broken) {
    assert.ok(unreadable.has(`${lib.root}/${b.relPath}`), `${b.relPath} not in problems.txt`);
  }
  for (const t of lib.good) {
    assert.ok(!unreadable.has(`${lib.root}/${t.relPath}`), `good ${t.relPath} in problems.txt`);
  }

  const exp = expectations(lib);
  const bySource = new Map(lib.good.map((t) => [`${lib.root}/${t.relPath}`, t]));
  const coverSources = new Set(lib.covers.map((c) => `${lib.root}/${c}`));
  const sourceHash = new Map<string, string>();
  await pool([...bySource.keys(), ...coverSources], 16, async (p) => {
    sourceHash.set(p, await sha256File(p));
  });

  for (const view of VIEWS) {
    const w = await walk(`${mnt}/${view}`);
    assert.equal(w.symlinks.length, 0, `symlinks under /${view}`);
    for (const d of w.dirs) {
      assertNameRules(`${view}/${d}`);
      const st = await Deno.stat(`${mnt}/${view}/${d}`);
      assert.equal(st.mode! & 0o777, 0o555, `mode of /${view}/${d}`);
    }
    const seen = new Map<GeneratedTrack, string>();
    /** Leaf folder -> source folders of its tracks, and its cover entries. */
    const leaves = new Map<string, { sourceDirs: Set<string>; covers: string[] }>();
    const leaf = (d: string) => {
      let l = leaves.get(d);
      if (!l) leaves.set(d, l = { sourceDirs: new Set(), covers: [] });
      return l;
    };
    await pool(w.files, 16, async (rel) => {
      const path = `${view}/${rel}`;
      const full = `${mnt}/${path}`;
      assertNameRules(path);
      const source = await getXattr(full, SOURCE_XATTR);
      assert.ok(source, `${path} has no source xattr`);
      if (/^cover\.(jpg|png)$/.test(basename(rel))) {
        assert.ok(coverSources.has(source), `${path} comes from ${source}, not a cover`);
        leaf(dirname(path)).covers.push(source);
      } else {
        const t = bySource.get(source);
        assert.ok(t, `${path} comes from ${source}, which is not a good track`);
        assert.ok(!seen.has(t), `${t.relPath} twice under /${view}: ${seen.get(t)} and ${path}`);
        seen.set(t, path);
        const e = exp.get(t)!;
        assert.equal(dirname(path), e.dirs[view], `folder of ${t.relPath} under /${view}`);
        assertTrackName(basename(path), e, t.ext, renamed, path);
        leaf(dirname(path)).sourceDirs.add(dirname(source));
      }
      const [st, src] = await Promise.all([Deno.stat(full), Deno.stat(source)]);
      assert.ok(st.isFile, path);
      assert.equal(st.size, src.size, `size of ${path}`);
      assert.equal(st.mtime?.getTime(), src.mtime?.getTime(), `mtime of ${path}`);
      assert.equal(st.mode! & 0o777, 0o444, `mode of ${path}`);
      assert.equal(await sha256File(full), sourceHash.get(source), `bytes of ${path}`);
    });
    const missing = lib.good.filter((t) => !seen.has(t)).map((t) => t.relPath);
    assert.deepEqual(missing, [], `good files missing under /${view}`);

    let withCover = 0;
    for (const [dir, l] of leaves) {
      assert.ok(l.sourceDirs.size > 0, `/${dir} holds a cover but no track`);
      // A track's own folder, else the parent of a disc folder (CD1, Disc 2).
      const candidates = [...coverSources].filter((c) =>
        l.sourceDirs.has(dirname(c)) ||
        [...l.sourceDirs].some((d) =>
          /^(?:cd|dis[ck])[\s._-]*\d/i.test(basename(d)) && dirname(d) === dirname(c)
        )
      );
      if (candidates.length === 0) {
        assert.deepEqual(l.covers, [], `/${dir} shows a cover but no source folder has one`);
      } else {
        assert.equal(l.covers.length, 1, `/${dir} should show one cover.<ext>: ${l.covers}`);
        assert.ok(candidates.includes(l.covers[0]), `/${dir} shows ${l.covers[0]}`);
        withCover++;
      }
    }
    if (coverSources.size > 0) assert.ok(withCover > 0, `no cover under /${view}`);
  }
}

async function withLibrary(
  opts: Parameters<typeof makeLibrary>[1],
  fn: (dirs: DaemonDirs, lib: FixtureLibrary) => Promise<void>,
): Promise<void> {
  await withDirs(async (dirs) => {
    const lib = await makeLibrary(dirs.lib, opts);
    await fn(dirs, lib);
  });
}

// ---------------------------------------------------------------------------------------------
// Tests

Deno.test(
  "mount: every good file appears once per view with the source bytes; broken, hidden and non-audio files stay out; covers show",
  needsFuse,
  async () => {
    await withLibrary(
      { tracks: 150, seed: 3, broken: 8, covers: true, extras: true },
      async (dirs, lib) => {
        assert.ok(lib.covers.length > 0 && lib.broken.length === 8 && lib.others.length > 0);
        await withDaemon(daemonOptions(dirs), async (d) => {
          const st = await d.waitScanDone();
          assert.equal(st.tracks, lib.good.length);
          await verifyTree(dirs.mnt, lib);
          // Nothing of the extras leaks in by name either.
          const all = (await Promise.all(VIEWS.map((v) => walk(`${dirs.mnt}/${v}`))))
            .flatMap((w) => w.files);
          for (const f of all) {
            assert.ok(!/Damaged |\.DS_Store|notes\.txt|\.cue$|\.m3u$/.test(f), f);
            assert.ok(!basename(f).startsWith("."), `hidden file ${f}`);
          }
          const status = JSON.parse(await Deno.readTextFile(`${dirs.mnt}/.musicfs/status.json`));
          assert.equal(status.tracks, lib.good.length);
          // Read-only: writes fail.
          await assert.rejects(
            Deno.writeTextFile(`${dirs.mnt}/Artists/new.txt`, "x"),
            (e: Error) => /read-only|EROFS|os error 30/i.test(e.message),
          );
        });
      },
    );
  },
);

Deno.test(
  "mount: a file added, retagged, rewritten or removed in the source shows up within seconds",
  needsFuse,
  async () => {
    await withLibrary(
      { tracks: 60, seed: 5, formats: ["flac", "mp3-id3v24"] },
      async (dirs, lib) => {
        await withDaemon(daemonOptions(dirs), async (d) => {
          await d.waitScanDone();
          const mnt = dirs.mnt;
          const within = 8000; // below the 10 s kernel entry/attr TTL: only invalidation explains it

          // Added: a new artist. Look it up first so the kernel has seen the name missing.
          const addedTags = {
            artist: "Zed Newcomer",
            albumArtist: "Zed Newcomer",
            album: "First Light",
            title: "Dawn Chorus",
            track: 1,
            year: 2021,
            genre: "Ambient",
          };
          const addedMount = `${mnt}/Artists/Zed Newcomer/First Light (2021)/01 - Dawn Chorus.flac`;
          await assert.rejects(Deno.stat(addedMount), Deno.errors.NotFound);
          const artistsBefore: string[] = [];
          for await (const e of Deno.readDir(`${mnt}/Artists`)) artistsBefore.push(e.name);
          assert.ok(!artistsBefore.includes("Zed Newcomer"));
          await Deno.mkdir(`${dirs.lib}/Zed Newcomer/First Light`, { recursive: true });
          const addedSource = `${dirs.lib}/Zed Newcomer/First Light/01 - Dawn Chorus.flac`;
          await writeTrack(addedSource, "flac", addedTags);
          await waitFor(() => exists(addedMount), within, "the added file in /Artists");
          assert.equal(await sha256File(addedMount), await sha256File(addedSource));
          assert.ok(
            await exists(`${mnt}/Albums/First Light (2021) - Zed Newcomer/01 - Dawn Chorus.flac`),
          );
          const artistsAfter: string[] = [];
          for await (const e of Deno.readDir(`${mnt}/Artists`)) artistsAfter.push(e.name);
          assert.ok(artistsAfter.includes("Zed Newcomer"));

          // Retagged: a new title renames the file in every view.
          const victim = lib.good.find((t) =>
            t.format === "flac" && t.tags.track !== undefined && t.tags.title !== undefined &&
            t.tags.albumArtist !== undefined && t.tags.disc === undefined &&
            lib.good.filter((u) => u.tags.title === t.tags.title).length === 1
          )!;
          assert.ok(victim, "a plain flac track to retag");
          const exp = expectations(lib).get(victim)!;
          const oldPath = `${mnt}/${exp.dirs.Artists}/${exp.stem}.flac`;
          assert.ok(await exists(oldPath), oldPath);
          await Deno.readFile(oldPath); // in the kernel's page cache now
          const newTags = { ...victim.tags, title: "Entirely Retitled" };
          const victimSource = `${dirs.lib}/${victim.relPath}`;
          await writeTrack(victimSource, "flac", newTags);
          const newPath = `${mnt}/${exp.dirs.Artists}/${
            pad2(victim.tags.track!)
          } - Entirely Retitled.flac`;
          await waitFor(
            async () => await exists(newPath) && !(await exists(oldPath)),
            within,
            "the retagged file to be renamed",
          );
          assert.equal(await sha256File(newPath), await sha256File(victimSource));
          assert.ok(
            await exists(
              `${mnt}/${exp.dirs.Albums}/${pad2(victim.tags.track!)} - Entirely Retitled.flac`,
            ),
          );

          // Rewritten in place with the same tags: same name, new size and bytes (page cache dropped).
          const before = await Deno.readFile(newPath);
          const size = await writeTrack(victimSource, "flac", newTags, { padBytes: 8192 });
          assert.notEqual(size, before.length);
          await waitFor(
            async () => (await Deno.stat(newPath)).size === size,
            within,
            "the rewritten file's new size",
          );
          assert.equal(await sha256File(newPath), await sha256File(victimSource));

          // Removed: the file and its now empty folders go.
          await Deno.remove(`${dirs.lib}/Zed Newcomer`, { recursive: true });
          await waitFor(async () => !(await exists(addedMount)), within, "the removed file to go");
          await waitFor(
            async () => !(await exists(`${mnt}/Artists/Zed Newcomer`)),
            within,
            "the emptied artist folder to go",
          );
          const st = await d.getStatus();
          assert.equal(st.tracks, lib.good.length);
        });
      },
    );
  },
);

Deno.test(
  "mount: a corrupted library.db is set aside as library.db.corrupt-* and the full tree is rebuilt",
  needsFuse,
  async () => {
    await withLibrary({ tracks: 120, seed: 7, broken: 4, covers: true }, async (dirs, lib) => {
      await withDaemon(daemonOptions(dirs), async (d) => {
        await d.waitScanDone();
      });
      // Damage the middle of the database while no daemon runs.
      const dbPath = `${dirs.state}/library.db`;
      const size = (await Deno.stat(dbPath)).size;
      assert.ok(size >= 16384, `library.db is only ${size} bytes`);
      const f = await Deno.open(dbPath, { write: true });
      try {
        await f.seek(Math.floor(size / 4), Deno.SeekMode.Start);
        const junk = new Uint8Array(Math.floor(size / 2)).fill(0xff);
        for (let off = 0; off < junk.length;) off += await f.write(junk.subarray(off));
      } finally {
        f.close();
      }

      await withDaemon(daemonOptions(dirs), async (d) => {
        const aside: string[] = [];
        for await (const e of Deno.readDir(dirs.state)) {
          if (/^library\.db\.corrupt-/.test(e.name)) aside.push(e.name);
        }
        assert.equal(aside.length, 1, `library.db set aside once: ${aside}`);
        assert.match(d.stderr, /WRN.*damaged/);
        const st = await d.waitScanDone();
        assert.equal(st.tracks, lib.good.length);
        await verifyTree(dirs.mnt, lib);
      });
    });
  },
);

/** The numbers of the `Scanned <root> in N ms: ...` log line. */
function scannedLine(log: string): { seen: number; unchanged: number; read: number } | undefined {
  const m = /Scanned .* in \d+ ms: (\d+) files, (\d+) unchanged, (\d+) read/.exec(log);
  return m ? { seen: Number(m[1]), unchanged: Number(m[2]), read: Number(m[3]) } : undefined;
}

Deno.test(
  "mount: SIGKILL mid-scan, then a restart resumes from the checkpoint and ends with the complete tree",
  needsFuse,
  async () => {
    await withLibrary({ tracks: 3000, seed: 11 }, async (dirs, lib) => {
      // The scan takes about a second: the kill may land after it ended (seen on the restart:
      // nothing to resume and nothing to read). Then the whole run is tried again afresh.
      for (let attempt = 1;; attempt++) {
        assert.ok(attempt <= 4, "never caught the scan in progress");
        await Deno.remove(dirs.state, { recursive: true }).catch(() => {});
        let killedAt = -1;
        const first = await startDaemon(daemonOptions(dirs));
        try {
          await waitFor(
            async () => {
              const st = await first.getStatus(2000).catch(() => undefined);
              const s = st?.scan;
              if (s && s.committed > 0 && s.phase !== "done" && s.committed < lib.good.length) {
                first.kill("SIGKILL");
                killedAt = s.committed;
                return true;
              }
              return s?.phase === "done";
            },
            60_000,
            "a scan in progress",
          );
          await first.waitExit(10_000).catch(() => {});
        } finally {
          await first.stop(); // a no-op after the kill, except detaching the dead mount
        }
        if (killedAt < 0) continue;

        const done = await withDaemon(daemonOptions(dirs), async (d) => {
          // What was committed before the kill is served at once.
          assert.ok(
            d.tracksAtReady >= killedAt,
            `served ${d.tracksAtReady} tracks at start, but ${killedAt} were committed`,
          );
          const st = await d.waitScanDone();
          const scanned = scannedLine(d.stderr);
          assert.ok(scanned, `no scan summary in the log:\n${d.stderr}`);
          const resumed = /Resuming the interrupted scan/.test(d.stderr);
          if (!resumed && scanned.read === 0) return false; // the kill came after the end
          assert.ok(resumed, `the restart did not resume the interrupted scan:\n${d.stderr}`);
          // Only what the first run had not committed is read again.
          assert.ok(
            scanned.read <= lib.good.length - killedAt,
            `read ${scanned.read} files again after ${killedAt} were committed`,
          );
          assert.equal(st.tracks, lib.good.length);
          // The complete tree: every track once under /Artists, from the right source.
          const w = await walk(`${dirs.mnt}/Artists`);
          assert.equal(w.files.length, lib.good.length);
          const sources = new Set<string>();
          await pool(w.files, 32, async (f) => {
            const s = await getXattr(`${dirs.mnt}/Artists/${f}`, SOURCE_XATTR);
            assert.ok(s && !sources.has(s), `${f}: ${s}`);
            sources.add(s);
          });
          assert.deepEqual(
            [...sources].sort(),
            lib.good.map((t) => `${lib.root}/${t.relPath}`).sort(),
          );
          return true;
        });
        if (done) break;
      }
    });
  },
);

Deno.test(
  "mount: /.search/<query> lists symlinks that resolve to the matching /Artists files",
  needsFuse,
  async () => {
    await withLibrary({ tracks: 120, seed: 13 }, async (dirs, lib) => {
      await withDaemon(daemonOptions(dirs), async (d) => {
        await d.waitScanDone();
        await waitFor(async () => (await d.getStatus()).search.state === "ready", 20_000, "search");
        const mnt = dirs.mnt;
        const target = lib.good.find((t) =>
          t.tags.title !== undefined && /^[A-Za-z]+ [A-Za-z]+$/.test(t.tags.title) &&
          t.tags.artist !== undefined && /^[A-Za-z &]+$/.test(t.tags.artist) &&
          lib.good.filter((u) => u.tags.title === t.tags.title).length === 1
        );
        assert.ok(target, "a track with a plain two-word title");
        const source = `${lib.root}/${target.relPath}`;

        const check = async (query: string, wanted: GeneratedTrack[]) => {
          const dir = `${mnt}/.search/${query}`;
          const found = new Set<string>();
          for await (const e of Deno.readDir(dir)) {
            assert.ok(e.isSymlink, `${e.name} is not a symlink`);
            assertNameRules(e.name);
            const link = await Deno.readLink(`${dir}/${e.name}`);
            assert.ok(link.startsWith("../../Artists/"), link);
            const real = await Deno.realPath(`${dir}/${e.name}`);
            assert.ok(real.startsWith(`${mnt}/Artists/`), real);
            const src = await getXattr(real, SOURCE_XATTR);
            assert.ok(src, real);
            found.add(src);
            const t = lib.good.find((u) => `${lib.root}/${u.relPath}` === src)!;
            const artist = t.tags.artist ?? t.tags.albumArtist ?? "Unknown Artist";
            const title = t.tags.title ?? fileStem(t.relPath);
            if (byteLength(`${artist} - ${title}.${t.ext}`) < 200) {
              assert.match(
                e.name,
                new RegExp(`^${escapeRe(san(`${artist} - ${title}`))}( \\(\\d+\\))?\\.${t.ext}$`),
              );
            }
            // The link resolves to the same bytes as the source.
            assert.equal(await sha256File(`${dir}/${e.name}`), await sha256File(src));
          }
          for (const w of wanted) {
            assert.ok(found.has(`${lib.root}/${w.relPath}`), `${query}: ${w.relPath} missing`);
          }
          return found;
        };
        const byTitle = await check(target.tags.title!, [target]);
        assert.ok(byTitle.has(source));
        const artist = target.tags.artist!;
        await check(artist, lib.good.filter((t) => t.tags.artist === artist));
        // A query that matches nothing gives an empty folder.
        const none: string[] = [];
        for await (const e of Deno.readDir(`${mnt}/.search/zzqqxxnothing`)) none.push(e.name);
        assert.deepEqual(none, []);
      });
    });
  },
);

Deno.test(
  "mount: --layout reshapes /Artists and leaves the other views alone",
  needsFuse,
  async () => {
    await withLibrary({ tracks: 60, seed: 17 }, async (dirs, lib) => {
      const layout = "{genre}/{artist}/{track:02} {title}";
      await withDaemon(daemonOptions(dirs, { args: ["--layout", layout] }), async (d) => {
        await d.waitScanDone();
        const mnt = dirs.mnt;
        const exp = expectations(lib);
        const bySource = new Map(lib.good.map((t) => [`${lib.root}/${t.relPath}`, t]));
        const w = await walk(`${mnt}/Artists`);
        assert.equal(w.files.length, lib.good.length);
        for (const f of w.files) {
          assertNameRules(f);
          const t = bySource.get((await getXattr(`${mnt}/Artists/${f}`, SOURCE_XATTR))!)!;
          assert.ok(t, f);
          const genre = san(t.tags.genre ?? "Unknown Genre");
          const artist = san(t.tags.artist ?? t.tags.albumArtist ?? "Unknown Artist");
          const title = t.tags.title ?? fileStem(t.relPath);
          const stem = san(t.tags.track === undefined ? title : `${pad2(t.tags.track)} ${title}`);
          assert.equal(dirname(f), `${genre}/${artist}`, f);
          if (byteLength(`${stem}.${t.ext}`) <= 255) {
            assert.match(
              basename(f).normalize("NFC"),
              new RegExp(`^${escapeRe(stem)}( \\(\\d+\\))?\\.${t.ext}$`),
            );
          }
        }
        // /Albums keeps the default shape.
        const albums = await walk(`${mnt}/Albums`);
        assert.equal(albums.files.length, lib.good.length);
        for (const f of albums.files) {
          const t = bySource.get((await getXattr(`${mnt}/Albums/${f}`, SOURCE_XATTR))!)!;
          assert.equal(`Albums/${dirname(f)}`, exp.get(t)!.dirs.Albums);
        }
      });
    });
  },
);

Deno.test("mount: bad arguments exit 2 with one line and change nothing", async () => {
  const dirs = await daemonDirs();
  try {
    const file = `${dirs.root}/a-file.mp3`;
    await Deno.writeTextFile(file, "not a folder");
    const base = ["--mountpoint", dirs.mnt, "--state-dir", dirs.state, "--cache-dir", dirs.cache];
    const cases: [string, string[], RegExp][] = [
      ["nonexistent library", ["mount", `${dirs.root}/nope`, ...base], /does not exist/],
      ["library is a file", ["mount", file, ...base], /not a directory/],
      ["bad --cache-size", ["mount", dirs.lib, ...base, "--cache-size", "12Q"], /size/i],
      [
        "unknown layout field",
        ["mount", dirs.lib, ...base, "--layout", "{albumartist}/{bogus}/{title}"],
        /bogus/,
      ],
    ];
    const results = await Promise.all(
      cases.map(([, args]) => musicfs([...args, "--foreground"])),
    );
    for (let i = 0; i < cases.length; i++) {
      const [what, , re] = cases[i];
      const r = results[i];
      assert.equal(r.code, 2, `${what}: exit ${r.code}, stderr ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
      assert.match(lines[0], /^musicfs: /, what);
      assert.match(lines[0], re, what);
      assert.equal(r.stdout, "", what);
    }
    assert.equal(await exists(dirs.state), false, "the state dir was created");
    assert.equal(await exists(dirs.cache), false, "the cache dir was created");
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dirs.mnt)), []);
  } finally {
    await dirs.cleanup();
  }
});

Deno.test(
  "mount: a non-empty mountpoint or one that is a file exits 1 with one line and opens no store",
  needsFuse,
  async () => {
    await withDirs(async (dirs) => {
      await Deno.writeTextFile(`${dirs.mnt}/keep.txt`, "mine\n");
      const fileMnt = `${dirs.root}/a-file`;
      await Deno.writeTextFile(fileMnt, "also mine\n");
      await makeLibrary(dirs.lib, { tracks: 3 });
      const cases: [string, string, RegExp][] = [
        ["non-empty", dirs.mnt, /not empty/],
        ["a file", fileMnt, /not a directory/],
      ];
      for (const [what, mnt, re] of cases) {
        const r = await musicfs([
          "mount",
          dirs.lib,
          "--mountpoint",
          mnt,
          "--state-dir",
          dirs.state,
          "--cache-dir",
          dirs.cache,
          "--foreground",
        ]);
        assert.equal(r.code, 1, `${what}: exit ${r.code}: ${r.stderr}`);
        const lines = r.stderr.trim().split("\n");
        assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
        assert.match(lines[0], /^musicfs: /, what);
        assert.match(lines[0], re, what);
        assert.equal(await exists(`${dirs.state}/library.db`), false, `${what}: library.db made`);
        assert.equal(await isMounted(mnt), false);
      }
      assert.equal(await Deno.readTextFile(`${dirs.mnt}/keep.txt`), "mine\n");
      assert.equal(await Deno.readTextFile(fileMnt), "also mine\n");
    });
  },
);
