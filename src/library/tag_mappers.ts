/**
 * One set of music-metadata tag mappers per thread instead of one per file parsed.
 *
 * music-metadata builds its eleven tag mappers anew for every file (each `MetadataCollector`
 * makes a `CombinedTagMapper`), and the case-insensitive ones upper-case every key of their
 * tag maps each time: 20-25% of a parse worker's CPU on a first scan here (CPU profile of
 * `deno task bench scale`), more than reading the file. The mappers keep no state after they
 * are built (their fields are the tag types and the tag map; mapping clones each tag), so
 * every mapper class is made to hand back the one instance built first: `new C()` runs C's
 * `super(...)` call, and the super constructor is whatever C's prototype is, which this module
 * sets to a function returning the shared instance (statics still inherited through it).
 *
 * music-metadata exports none of these classes; they are reached through the collector that a
 * parse hands to its `observer`. Should a later version be shaped differently, nothing is
 * changed and {@link shareTagMappers} says so (the parse stays correct, only slower).
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { shareTagMappers } from "./tag_mappers.ts";
 *
 * assert.equal(await shareTagMappers(), true);
 * ```
 *
 * @module
 */
import { parseBuffer } from "music-metadata";

let shared: Promise<boolean> | undefined;

/** A 44-byte PCM WAV header with no samples: enough for a parse to build its collector. */
function tinyWav(): Uint8Array {
  const b = new Uint8Array(44);
  const v = new DataView(b.buffer);
  const ascii = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) b[at + i] = s.charCodeAt(i);
  };
  ascii(0, "RIFF");
  v.setUint32(4, 36, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, 1, true); // mono
  v.setUint32(24, 8000, true);
  v.setUint32(28, 16000, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  ascii(36, "data");
  v.setUint32(40, 0, true);
  return b;
}

type Ctor = abstract new (...args: unknown[]) => object;

/**
 * Make music-metadata reuse one instance of each tag mapper on this thread (see the module
 * comment). Resolves true when the mappers are shared (now or by an earlier call), false when
 * music-metadata is not shaped as expected (nothing changed then). Idempotent.
 */
export function shareTagMappers(): Promise<boolean> {
  return shared ??= (async () => {
    let collector: unknown;
    try {
      await parseBuffer(tinyWav(), { mimeType: "audio/wav" }, {
        duration: false,
        skipCovers: true,
        observer: (update: { metadata: unknown }) => (collector ??= update.metadata),
      });
    } catch {
      // A parse error after the collector was seen is fine; without it there is nothing to do.
    }
    const mappers = (collector as { tagMapper?: { tagMappers?: Record<string, unknown> } })
      ?.tagMapper?.tagMappers;
    if (!mappers || typeof mappers !== "object") return false;
    const instances = new Set(Object.values(mappers));
    if (instances.size === 0) return false;
    for (const mapper of instances) {
      if (!mapper || typeof mapper !== "object") return false;
      const cls = (mapper as object).constructor as Ctor;
      const base = Object.getPrototypeOf(cls) as Ctor;
      if (typeof cls !== "function" || typeof base !== "function" || base === Function.prototype) {
        return false;
      }
    }
    for (const mapper of instances) {
      const cls = (mapper as object).constructor as Ctor;
      const base = Object.getPrototypeOf(cls) as Ctor;
      // An ordinary function constructor that returns an object: `super(...)` yields it.
      const one = function () {
        return mapper;
      } as unknown as Ctor;
      Object.setPrototypeOf(one, base);
      (one as unknown as { prototype: object }).prototype = base.prototype;
      Object.setPrototypeOf(cls, one);
    }
    return true;
  })();
}
