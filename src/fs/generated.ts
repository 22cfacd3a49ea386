/**
 * The generated files of /.musicfs: status.json (from the daemon's callback, or the tree's
 * counts) and problems.txt (unreadable files, renamed entries, playlist entries not found).
 *
 * @module
 */
import type { Problem } from "../library/types.ts";
import type { TreeCore } from "./core.ts";
import { escapeControl } from "./escape.ts";
import { INO } from "./inodes.ts";
import { compare } from "./naming.ts";

const encoder = new TextEncoder();

/** The content of /.musicfs/status.json and /.musicfs/problems.txt. */
export class GeneratedFiles {
  /** The library's problem list. */
  list: Problem[] = [];
  problemsText: { version: number; bytes: Uint8Array } | undefined;

  constructor(readonly c: TreeCore, readonly status: () => string) {}

  /** status.json, made afresh. */
  statusBytes(): Uint8Array {
    return encoder.encode(this.status());
  }

  /** The inode of the directory holding virtual path `path` (for problems.txt). */
  dirIno(path: string): number {
    let ino: number = INO.root;
    const parts = path.split("/").filter(Boolean);
    for (let i = 0; i < parts.length - 1; i++) {
      const n = this.c.lookup(ino, parts[i]);
      if (!n) return 0;
      ino = n.ino;
    }
    return ino;
  }

  /** problems.txt, made again only when something it lists changed. */
  bytes(): Uint8Array {
    if (this.problemsText?.version === this.c.problemsVersion) return this.problemsText.bytes;
    const problems = this.list
      .map((p) => ({ path: this.c.source(p.originId, p.relPath), reason: p.reason }))
      .sort((a, b) => compare(a.path, b.path));
    const collisions = this.c.dirs.collisions();
    const missing = this.c.playlists.missingEntries();
    const lines = [
      `# musicfs problems: ${problems.length} unreadable file(s), ${collisions.length} renamed entr${
        collisions.length === 1 ? "y" : "ies"
      }, ${missing.length} playlist entr${missing.length === 1 ? "y" : "ies"} not found`,
    ];
    // One line per entry whatever the names hold (a name with a newline would forge lines).
    const e = escapeControl;
    for (const p of problems) lines.push(`unreadable: ${e(p.path)}: ${e(p.reason)}`);
    for (const c of collisions) {
      // A name whose first holder went away stays with its source (names stay put).
      const why = this.c.lookup(this.dirIno(c.path), c.wanted) ? "name taken" : "name was taken";
      lines.push(
        `renamed: ${e(c.path)} (${why}: ${e(c.wanted)}; source: ${e(c.sourcePath)})`,
      );
    }
    for (const m of missing) {
      lines.push(`playlist entry not found: ${e(m.playlist)}: ${e(m.entry)}`);
    }
    const bytes = encoder.encode(lines.join("\n") + "\n");
    this.problemsText = { version: this.c.problemsVersion, bytes };
    return bytes;
  }
}
