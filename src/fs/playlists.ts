/**
 * /Playlists: the library's m3u/m3u8 playlists, served as `<name>.m3u8` with each entry
 * rewritten to the track's place in the mount (entries not in the library are listed in
 * problems.txt).
 *
 * @module
 */
import type { LibraryChange } from "../library/change.ts";
import type { Playlist } from "../library/types.ts";
import type { TreeCore } from "./core.ts";
import { artistName, compare, sanitizeName, titleName } from "./naming.ts";
import { ARTISTS, Generated, type PlaylistEntry, sourceDirKey, type Track } from "./nodes.ts";

const encoder = new TextEncoder();

/** The playlists of the library and the tracks their entries name. */
export class Playlists {
  readonly byKey = new Map<string, PlaylistEntry>();
  /** Every playlist entry (an absolute source path) with the track it names, if any. */
  index = new Map<string, Track | undefined>();

  constructor(readonly c: TreeCore) {}

  /**
   * The playlist part of a library change; `placed`: tracks moved, so every playlist's
   * content (and size) changes.
   */
  apply(changes: Partial<LibraryChange>, inodes: Set<number>, placed: boolean): void {
    let playlistsChanged = false;
    for (const r of changes.removedPlaylists ?? []) {
      const key = sourceDirKey(r.originId, r.relPath);
      const had = this.byKey.get(key);
      if (!had) continue;
      this.c.dirs.remove(this.c.playlistDir, had.node);
      this.c.nodes.delete(had.node.ino);
      this.byKey.delete(key);
      playlistsChanged = true;
    }
    for (const p of changes.playlists ?? []) {
      const had = this.byKey.get(sourceDirKey(p.originId, p.relPath));
      if (had) inodes.add(had.node.ino);
      this.set(p);
      playlistsChanged = true;
    }
    if (playlistsChanged) this.reindex();
    if ((placed || playlistsChanged) && this.byKey.size) {
      // Entries follow their tracks: the kernel must not keep an old size.
      for (const e of this.byKey.values()) inodes.add(e.node.ino);
    }
  }

  /** A track came or changed: the entries naming its source find it. */
  relink(t: Track): void {
    const src = this.c.source(t.track.originId, t.track.relPath);
    if (this.index.has(src)) {
      this.index.set(src, t);
      this.c.problemsVersion++;
    }
  }

  /** Show a playlist (new or changed) in /Playlists. */
  set(p: Playlist): void {
    const key = sourceDirKey(p.originId, p.relPath);
    const had = this.byKey.get(key);
    if (had) {
      had.rec = p;
      had.cache = undefined;
      had.node.acc = undefined;
      had.node.accOf = undefined;
      return;
    }
    const base = p.relPath.slice(p.relPath.lastIndexOf("/") + 1).replace(/\.m3u8?$/i, "");
    const entry: PlaylistEntry = {
      rec: p,
      cache: undefined,
      node: undefined!,
    };
    entry.node = new Generated(
      this.c.inodes.hash(`p${p.originId}\0${p.relPath}`),
      sanitizeName(base, "m3u8"),
      () => this.bytes(entry),
      "m3u8",
      this.c.source(p.originId, p.relPath),
    );
    entry.node.links = 0;
    this.byKey.set(key, entry);
    this.c.nodes.set(entry.node.ino, entry.node);
    this.c.dirs.insert(this.c.playlistDir, entry.node);
  }

  /** Map every playlist entry to its track (one pass over the tracks). */
  reindex(): void {
    const index = new Map<string, Track | undefined>();
    for (const e of this.byKey.values()) {
      for (const p of e.rec.entries) index.set(p, undefined);
    }
    if (index.size) {
      for (const t of this.c.tracks.values()) {
        const src = this.c.source(t.track.originId, t.track.relPath);
        if (index.has(src)) index.set(src, t);
      }
    }
    this.index = index;
    this.c.problemsVersion++;
  }

  /** A track went or is about to change: the entries naming it find nothing for now. */
  unindex(t: Track): void {
    const src = this.c.source(t.track.originId, t.track.relPath);
    if (this.index.get(src) === t) {
      this.index.set(src, undefined);
      this.c.problemsVersion++;
    }
  }

  /** `#EXTM3U`, then for each entry found: `#EXTINF` and its path relative to /Playlists. */
  bytes(e: PlaylistEntry): Uint8Array {
    if (e.cache?.version === this.c.placeVersion) return e.cache.bytes;
    const lines = ["#EXTM3U"];
    for (const p of e.rec.entries) {
      const t = this.index.get(p);
      if (!t || !t.parents.length) continue;
      const r = t.track;
      const secs = r.duration === undefined ? -1 : Math.round(r.duration);
      lines.push(`#EXTINF:${secs},${artistName(r)} - ${titleName(r)}`.replace(/[\r\n]/g, " "));
      lines.push(`..${this.c.filePath(t.parents[ARTISTS], t)}`);
    }
    const bytes = encoder.encode(lines.join("\n") + "\n");
    e.cache = { version: this.c.placeVersion, bytes };
    return bytes;
  }

  /** Playlist entries that point at nothing in the library. */
  missingEntries(): { playlist: string; entry: string }[] {
    const out: { playlist: string; entry: string }[] = [];
    for (const e of this.byKey.values()) {
      for (const p of e.rec.entries) {
        if (!this.index.get(p)) out.push({ playlist: e.node.sourcePath, entry: p });
      }
    }
    return out.sort((a, b) => compare(a.playlist, b.playlist));
  }
}
