/**
 * A parse worker of the {@link ParserPool} (pool.ts): reads the tags of the files it is sent, one
 * batch at a time, and answers with one {@link TagResult} per file, in order. readTags never
 * throws, so a broken file costs a result, never the worker.
 */
import { readTags, type TagResult } from "./tags.ts";

/** A batch of files to parse. */
export interface ParseRequest {
  id: number;
  paths: string[];
}

/** The results of a {@link ParseRequest}, in the same order. */
export interface ParseResponse {
  id: number;
  results: TagResult[];
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ParseRequest>) => void) | null;
  postMessage(m: ParseResponse): void;
};

scope.onmessage = async (e) => {
  const results: TagResult[] = [];
  for (const path of e.data.paths) results.push(await readTags(path));
  scope.postMessage({ id: e.data.id, results });
};
