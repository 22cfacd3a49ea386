/**
 * Library roots as given on the command line, made disjoint (issue 10, rule 7): a root given
 * twice, or lying inside another root, is merged into the outer one, so every source file is
 * scanned, watched and shown exactly once.
 */

/** A root dropped because another root already covers it. */
export interface MergedRoot {
  /** The root as given (resolved). */
  root: string;
  /** The root that covers it. */
  into: string;
  /** One line for the user. */
  message: string;
}

/** Whether `path` is `root` or lies below it (both absolute and resolved). */
function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root === "/" ? "/" : root + "/");
}

/**
 * Disjoint roots from resolved absolute paths, in the order given (an outer root given after an
 * inner one takes the inner one's place), and the roots merged away.
 */
export function mergeRoots(paths: string[]): { roots: string[]; merged: MergedRoot[] } {
  const roots: string[] = [];
  const merged: MergedRoot[] = [];
  for (const p of paths) {
    const outer = roots.find((r) => within(p, r));
    if (outer !== undefined) {
      merged.push({
        root: p,
        into: outer,
        message: p === outer
          ? `Library ${p} is given twice; it is scanned once`
          : `Library ${p} is inside library ${outer}; its files are shown once, from ${outer}`,
      });
      continue;
    }
    // An outer root given after roots inside it replaces them.
    for (let i = roots.length - 1; i >= 0; i--) {
      if (within(roots[i], p)) {
        merged.push({
          root: roots[i],
          into: p,
          message: `Library ${
            roots[i]
          } is inside library ${p}; its files are shown once, from ${p}`,
        });
        roots.splice(i, 1);
      }
    }
    roots.push(p);
  }
  return { roots, merged };
}
