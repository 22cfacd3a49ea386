/**
 * A parse worker of the {@link ParserPool} (pool.ts): reads the tags of the files it is sent, one
 * batch at a time, and answers each file as soon as it is read (the pool's hang detection counts
 * on that steady progress). readTags never throws, so a broken file costs a result, never the
 * worker.
 */
import { readTags, type TagResult } from "./tags.ts";

/** A batch of files to parse. */
export interface ParseRequest {
  id: number;
  paths: string[];
}

/**
 * The result for file `index` of the {@link ParseRequest} `id`; or, once at start, `ready`
 * (module loading is not parsing: the pool's hang watchdog starts after it).
 */
export type ParseResponse = { id: number; index: number; result: TagResult } | { ready: true };

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ParseRequest>) => void) | null;
  postMessage(m: ParseResponse): void;
};

scope.postMessage({ ready: true });

scope.onmessage = async (e) => {
  const { id, paths } = e.data;
  for (let index = 0; index < paths.length; index++) {
    scope.postMessage({ id, index, result: await readTags(paths[index]) });
  }
};
