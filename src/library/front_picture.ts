/**
 * The embedded front picture of an audio file, read on demand (for the tree's `cover.<ext>`
 * when a folder has no cover image). Only the one picture asked for is ever in memory, and
 * only while a reader holds it. Uses music-metadata (its async file reads keep the request loop
 * free); a stop-gap until the library's own extraction function lands.
 */
import { type IPicture, parseFile } from "music-metadata";

/** The picture bytes, exactly as embedded, and their MIME type. */
export interface FrontPicture {
  /** The image bytes. */
  data: Uint8Array;
  /** MIME type as tagged, e.g. `image/jpeg`. */
  format: string;
}

/** The front cover among `pictures`: type "Cover (front)" first, else the first picture. */
export function pickFront(pictures: readonly IPicture[] | undefined): IPicture | undefined {
  if (!pictures?.length) return undefined;
  return pictures.find((p) => /front/i.test(p.type ?? "")) ?? pictures[0];
}

/** Read the embedded front picture of `path`; null when the file has none. Throws on I/O errors. */
export async function readFrontPicture(path: string): Promise<FrontPicture | null> {
  const meta = await parseFile(path, { skipCovers: false, duration: false, skipPostHeaders: true });
  const p = pickFront(meta.common.picture);
  return p ? { data: p.data, format: p.format } : null;
}
