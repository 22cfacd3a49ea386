/**
 * The four tag views (/Artists with its `--layout`, /Albums, /Genres, /Years): which album and
 * spelling groups a track joins, and which directories it is placed in. Directory changes go
 * through the journal ({@link DirJournal}).
 *
 * @module
 */
import type { LibraryChange } from "../library/change.ts";
import type { TrackRecord } from "../library/types.ts";
import type { TreeCore } from "./core.ts";
import type { NameRow } from "./journal.ts";
import {
  DEFAULT_LAYOUT,
  type Layout,
  type LayoutPart,
  type LayoutTrack,
  parseLayout,
  renderLayout,
} from "./layout.ts";
import {
  albumArtistName,
  albumName,
  artistName,
  discsOf,
  foldKey,
  positive,
  present,
  sanitizeName,
  trackFileName,
} from "./naming.ts";
import { Album, albumArtistSortOf, artistSortOf, bump, genresOf, Group, nfc } from "./grouping.ts";
import { ALBUMS, ARTISTS, type Dir, GENRES, Track, YEARS } from "./nodes.ts";
import { TRACK_INO_BASE } from "./inodes.ts";

/** Albums, spelling groups and the places of tracks in the views. */
export class Views {
  /** The /Artists layout in use. */
  readonly layout: Layout;
  readonly defaultLayout: boolean;
  /** Which of artist, artistsort, albumartistsort the (custom) layout uses. */
  readonly layoutUses: boolean[];
  readonly albums = new Map<string, Album>();
  /** Spelling groups by fold key: album artists, genres, and the layout's artist fields. */
  readonly aaReg = new Map<string, Group>();
  readonly genreReg = new Map<string, Group>();
  readonly layoutRegs: Map<string, Group>[] = [new Map(), new Map(), new Map()];

  /** Throws {@link LayoutError} for a bad layout string. */
  constructor(readonly c: TreeCore, layout: Layout | string | undefined) {
    this.layout = typeof layout === "string"
      ? parseLayout(layout)
      : layout ?? parseLayout(DEFAULT_LAYOUT);
    this.defaultLayout = this.layout.template === DEFAULT_LAYOUT;
    const used = new Set<string>();
    const collect = (parts: readonly LayoutPart[]) => {
      for (const p of parts) {
        if (p.kind === "field") used.add(p.field);
        else if (p.kind === "group") collect(p.parts);
      }
    };
    for (const seg of this.layout.segments) collect(seg);
    this.layoutUses = this.defaultLayout
      ? [false, false, false]
      : [used.has("artist"), used.has("artistsort"), used.has("albumartistsort")];
  }

  /** Place every track of a new tree (tracks with stored names first: they keep them). */
  build(tracks: Iterable<TrackRecord>, names: Iterable<NameRow>): void {
    for (const _ of this.buildSteps(tracks, names));
  }

  /** {@link build} in steps: it yields every `every` tracks (a build beside a serving mount). */
  *buildSteps(
    tracks: Iterable<TrackRecord>,
    names: Iterable<NameRow>,
    every = 1000,
  ): Generator<void> {
    const groups = new Set<Group>();
    const albums = new Set<Album>();
    let n = 0;
    for (const rec of tracks) {
      if (++n % every === 0) yield;
      let t = this.c.tracks.get(rec.id);
      if (t) {
        // The same id twice: the later record wins.
        this.leave(t, groups, albums);
        t.track = rec;
      } else {
        t = new Track(this.c.inodes.track(rec.id), rec);
        this.c.tracks.set(rec.id, t);
        if (t.ino < TRACK_INO_BASE) this.c.nodes.set(t.ino, t);
      }
      this.join(t, groups, albums);
    }
    for (const g of groups) g.settle();
    for (const a of albums) {
      if (a.tracks.size === 0) this.dropAlbum(a);
      else a.settle();
    }
    for (const r of names) {
      const t = this.c.tracks.get(r.fileId);
      if (t) (t.assigned ??= new Map()).set(r.dir, r.name);
    }
    // Tracks with stored names first: they keep them, whatever sorts first.
    for (const t of this.c.tracks.values()) {
      if (!t.assigned) continue;
      this.place(t);
      if (++n % every === 0) yield;
    }
    for (const t of this.c.tracks.values()) {
      if (t.assigned) continue;
      this.place(t);
      if (++n % every === 0) yield;
    }
  }

  /**
   * The track part of a library change: remove, re-place and add tracks, and re-place the
   * tracks of albums and spellings that changed. True when a track's place changed.
   */
  apply(changes: Partial<LibraryChange>, inodes: Set<number>): boolean {
    const albums = new Set<Album>();
    const groups = new Set<Group>();
    const placing = new Set<Track>();
    const plKeys = this.c.playlists.index.size > 0;
    for (const { id } of changes.removed ?? []) {
      const t = this.c.tracks.get(id);
      if (!t) continue;
      this.detach(t);
      this.leave(t, groups, albums);
      this.c.tracks.delete(id);
      this.c.nodes.delete(t.ino);
      this.c.covers.dropEmbedded(id, inodes);
      placing.delete(t);
      if (plKeys) this.c.playlists.unindex(t);
    }
    const upserts = [...(changes.added ?? []), ...(changes.changed ?? [])];
    for (const rec of upserts) {
      let t = this.c.tracks.get(rec.id);
      if (t) {
        this.detach(t);
        this.leave(t, groups, albums);
        if (plKeys) this.c.playlists.unindex(t);
        t.track = rec;
        inodes.add(t.ino);
        this.c.covers.dropEmbedded(rec.id, inodes);
      } else {
        t = new Track(this.c.inodes.track(rec.id), rec);
        this.c.tracks.set(rec.id, t);
        if (t.ino < TRACK_INO_BASE) this.c.nodes.set(t.ino, t);
      }
      this.join(t, groups, albums);
      placing.add(t);
      if (plKeys) this.c.playlists.relink(t);
    }
    const replace = (t: Track) => {
      if (placing.has(t)) return;
      this.detach(t);
      placing.add(t);
    };
    // A spelling that becomes the most common renames the folders showing it.
    const respelled = new Set<Group>();
    for (const g of groups) {
      if (g.counts.size === 0 || !g.settle()) continue;
      if (this.aaReg.get(g.key) === g) { for (const a of g.albums) albums.add(a); }
      else respelled.add(g);
    }
    if (respelled.size) {
      // Rare (a spelling overtaking another): one pass over the tracks finds their holders.
      for (const t of this.c.tracks.values()) {
        if (
          t.genres.some((g) => respelled.has(g)) || t.lg?.some((g) => g && respelled.has(g))
        ) replace(t);
      }
    }
    for (const a of albums) {
      if (a.tracks.size === 0) {
        this.dropAlbum(a);
        continue;
      }
      let discs = 1;
      for (const t of a.tracks) discs = Math.max(discs, discsOf(t.track));
      a.discs = discs;
      // A new title spelling or year, or gaining or losing a second disc, renames every
      // track of the album.
      const renamed = a.settle();
      for (const t of a.tracks) if (renamed || t.multi !== discs > 1) replace(t);
    }
    for (const t of placing) this.place(t);
    if (placing.size) this.c.placeVersion++;
    return placing.size > 0;
  }

  /** Count one spelling `raw` in its group of `reg` (made if new). */
  groupJoin(reg: Map<string, Group>, raw: string, touched: Set<Group>): Group {
    const spelling = nfc(raw);
    const key = foldKey(spelling);
    let g = reg.get(key);
    if (!g) {
      g = new Group(key);
      reg.set(key, g);
    }
    bump(g.counts, spelling, 1);
    touched.add(g);
    return g;
  }

  /** Undo {@link groupJoin}; a group left with no spelling goes. */
  groupLeave(reg: Map<string, Group>, g: Group, raw: string, touched: Set<Group>): void {
    bump(g.counts, nfc(raw), -1);
    if (g.counts.size === 0) reg.delete(g.key);
    else touched.add(g);
  }

  /** Count a track in its album and its spelling groups. */
  join(t: Track, groups: Set<Group>, albums: Set<Album>): void {
    const rec = t.track;
    const aa = this.groupJoin(this.aaReg, albumArtistName(rec), groups);
    t.aa = aa;
    const title = albumName(rec);
    const key = `${aa.key}\0${foldKey(title)}`;
    let a = this.albums.get(key);
    if (!a) {
      a = new Album(key, aa);
      this.albums.set(key, a);
      aa.albums.add(a);
    }
    a.tracks.add(t);
    bump(a.titles, nfc(title), 1);
    const y = positive(rec.year);
    if (y !== undefined) bump(a.years, y, 1);
    a.discs = Math.max(a.discs, discsOf(rec));
    t.album = a;
    albums.add(a);
    const list = genresOf(rec);
    if (list.length === 1) t.genres = this.groupJoin(this.genreReg, list[0], groups).single;
    else {
      const seen: Group[] = [];
      for (const g of list) {
        const grp = this.groupJoin(this.genreReg, g, groups);
        // The same genre twice (`Rock` and `rock`) counts once.
        if (seen.includes(grp)) bump(grp.counts, nfc(g), -1);
        else seen.push(grp);
      }
      t.genres = seen;
    }
    if (this.layoutUses.some(Boolean)) {
      const raws = [artistName(rec), artistSortOf(rec), albumArtistSortOf(rec)];
      t.lg = raws.map((r, i) =>
        this.layoutUses[i] ? this.groupJoin(this.layoutRegs[i], r, groups) : undefined!
      );
    }
  }

  /** Undo {@link join} for the track's current record. */
  leave(t: Track, groups: Set<Group>, albums: Set<Album>): void {
    const rec = t.track;
    this.groupLeave(this.aaReg, t.aa, albumArtistName(rec), groups);
    const a = t.album;
    a.tracks.delete(t);
    bump(a.titles, nfc(albumName(rec)), -1);
    const y = positive(rec.year);
    if (y !== undefined) bump(a.years, y, -1);
    albums.add(a);
    const seen = new Set<Group>();
    for (const g of genresOf(rec)) {
      const grp = this.genreReg.get(foldKey(nfc(g)));
      if (!grp || seen.has(grp)) continue;
      seen.add(grp);
      this.groupLeave(this.genreReg, grp, g, groups);
    }
    if (t.lg) {
      const raws = [artistName(rec), artistSortOf(rec), albumArtistSortOf(rec)];
      for (let i = 0; i < 3; i++) {
        if (t.lg[i]) this.groupLeave(this.layoutRegs[i], t.lg[i], raws[i], groups);
      }
    }
  }

  /** Forget an album left without tracks. */
  dropAlbum(a: Album): void {
    if (this.albums.get(a.key) === a) this.albums.delete(a.key);
    a.aa.albums.delete(a);
  }

  /** The record a custom layout renders: grouped spellings, the album's year. */
  layoutView(t: Track): LayoutTrack {
    const rec = t.track;
    const a = t.album;
    const v: LayoutTrack = {
      ...rec,
      albumArtist: a.aa.display,
      album: present(rec.album) === undefined ? undefined : a.title,
      year: a.year,
      genre: present(rec.genre) === undefined && !rec.genres?.length
        ? undefined
        : t.genres[0].display,
    };
    if (t.lg) {
      if (t.lg[0] && present(rec.artist) !== undefined) v.artist = t.lg[0].display;
      if (t.lg[1] && present(rec.artistSort) !== undefined) v.artistSort = t.lg[1].display;
      if (t.lg[2] && present(rec.albumArtistSort) !== undefined) {
        v.albumArtistSort = t.lg[2].display;
      }
    }
    return v;
  }

  /** Put a track in its directories (one per view, one per genre), creating them as needed. */
  place(t: Track): void {
    const rec = t.track;
    const a = t.album;
    t.multi = a.discs > 1;
    t.name = trackFileName(rec, t.multi);
    let d: Dir | undefined;
    if (this.defaultLayout) {
      t.aname = undefined;
      d = a.leaves[ARTISTS];
      if (!d || d.dead) {
        d = a.leaves[ARTISTS] = this.c.dirs.subdir(
          this.c.dirs.subdir(this.c.viewDirs[ARTISTS], a.artistDir),
          a.albumDir,
        );
      }
    } else {
      const segs = renderLayout(this.layout, this.layoutView(t), t.multi);
      const file = segs[segs.length - 1];
      t.aname = file === t.name ? undefined : file;
      d = this.c.viewDirs[ARTISTS];
      for (let i = 0; i < segs.length - 1; i++) d = this.c.dirs.subdir(d, segs[i]);
    }
    const artists = d;
    d = a.leaves[ALBUMS];
    if (!d || d.dead) {
      d = a.leaves[ALBUMS] = this.c.dirs.subdir(this.c.viewDirs[ALBUMS], a.albumsDir);
    }
    const albums = d;
    d = a.leaves[YEARS];
    if (!d || d.dead) {
      d = a.leaves[YEARS] = this.c.dirs.subdir(
        this.c.dirs.subdir(this.c.viewDirs[YEARS], a.yearDir),
        a.yearsAlbumDir,
      );
    }
    // One exact-size array: growing it by push would reserve 17 slots per track.
    const genres = t.genres;
    const parents = new Array<Dir>(3 + genres.length);
    parents[ARTISTS] = artists;
    parents[ALBUMS] = albums;
    parents[YEARS] = d;
    for (let i = 0; i < genres.length; i++) {
      const g = genres[i];
      const leaf = a.genreLeaves.get(g);
      if (leaf && !leaf[0].dead && leaf[1] === g.display) d = leaf[0];
      else {
        d = this.c.dirs.subdir(this.c.viewDirs[GENRES], sanitizeName(g.display));
        d = this.c.dirs.subdir(this.c.dirs.subdir(d, a.artistDir), a.albumDir);
        a.genreLeaves.set(g, [d, g.display]);
      }
      parents[i === 0 ? GENRES : 3 + i] = d;
    }
    t.parents = parents;
    if (t.carry) {
      for (let i = 0; i < parents.length && i < t.carry.length; i++) {
        const name = t.carry[i];
        if (name !== undefined && !t.assigned?.has(parents[i].ino)) {
          this.c.dirs.setRow(t, parents[i].ino, name);
        }
      }
      t.carry = undefined;
    }
    for (const p of parents) this.c.dirs.insert(p, t);
    if (t.assigned) {
      // Names kept in directories the track has left are free again.
      for (const dir of [...t.assigned.keys()]) {
        if (!parents.some((p) => p.ino === dir)) this.c.dirs.setRow(t, dir, null);
      }
    }
  }

  /** Take a track out of all its directories (it keeps its stored names to carry along). */
  detach(t: Track): void {
    // A track with stored names takes them along when its folder is renamed (a new year or
    // spelling): the same place in the new folder keeps the same file name.
    if (t.assigned) t.carry = t.parents.map((p) => t.assigned!.get(p.ino));
    for (const d of t.parents) this.c.dirs.remove(d, t);
    t.parents = [];
  }
}
