/**
 * Counts of the problem list by kind, for status (issue 10, rule 1: whatever the scan skips is
 * listed and counted). The kind follows from the reasons the walk and the parser write.
 */
import type { Problem } from "./types.ts";

/** How many entries of each kind the library could not use. */
export interface ProblemCounts {
  /** Audio files that cannot be read or parsed (broken, cut, unreadable). */
  files: number;
  /** Folders that cannot be listed or entered (permission denied, PATH_MAX, EIO). */
  folders: number;
  /** Symlinks not followed (dangling, loops, special files). */
  symlinks: number;
  /** Hidden folders skipped (counted from each root's one summary line). */
  hiddenFolders: number;
}

const HIDDEN = /^(\d+) hidden folders? skipped/;

/** Count `problems` by kind. */
export function countProblems(problems: Iterable<Problem>): ProblemCounts {
  const c: ProblemCounts = { files: 0, folders: 0, symlinks: 0, hiddenFolders: 0 };
  for (const p of problems) {
    const hidden = HIDDEN.exec(p.reason);
    if (hidden) c.hiddenFolders += Number(hidden[1]);
    else if (/symlink/i.test(p.reason)) c.symlinks++;
    else if (/^cannot (list directory|enter folder)/.test(p.reason)) c.folders++;
    else c.files++;
  }
  return c;
}
