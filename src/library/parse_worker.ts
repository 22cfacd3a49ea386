/**
 * A parse worker of the {@link ParserPool} (pool.ts): reads the tags of the files it is sent, one
 * batch at a time, and answers as it goes (the pool's hang detection counts on that steady
 * progress). readTags never throws, so a broken file costs a result, never the
 * worker.
 */
import { readTags, type TagResult } from "./tags.ts";

/** A batch of files to parse. */
export interface ParseRequest {
  id: number;
  paths: string[];
}

/**
 * The results for files `from`, `from + 1`... of the {@link ParseRequest} `id`; or, once at
 * start, `ready` (module loading is not parsing: the pool's hang watchdog starts after it).
 */
export type ParseResponse =
  | { id: number; from: number; results: TagResult[]; /** ms spent reading them. */ ms: number }
  | { ready: true };

// Answers go in small groups: one message per file costs ~20% of the scan rate, and a group
// still reports progress far more often than the pool's hang watchdog needs.
const GROUP = 16;
const GROUP_MS = 50;

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ParseRequest>) => void) | null;
  postMessage(m: ParseResponse): void;
};

scope.postMessage({ ready: true });

scope.onmessage = async (e) => {
  const { id, paths } = e.data;
  let from = 0;
  let results: TagResult[] = [];
  let since = performance.now();
  for (let index = 0; index < paths.length; index++) {
    results.push(await readTags(paths[index]));
    const now = performance.now();
    if (results.length >= GROUP || index === paths.length - 1 || now - since >= GROUP_MS) {
      scope.postMessage({ id, from, results, ms: now - since });
      from = index + 1;
      results = [];
      since = performance.now();
    }
  }
};
