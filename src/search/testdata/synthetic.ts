/**
 * Synthetic libraries for tests and the bench: Zipf-distributed title words (a few very common
 * words like "the" and "love", a long tail of rare ones), artists with 8-15 track albums.
 * Deterministic for a given seed.
 */
import type { TrackRecord } from "../../library/types.ts";

/** A deterministic PRNG (mulberry32) returning floats in [0, 1). */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COMMON = ("the a of in my you me i love to and is on for your it be we all no night day " +
  "don't time heart life way world one baby girl man home dream blue light away down like " +
  "little good song back come go let get feel fire rain sun moon star sky road river blues " +
  "dance party tonight forever never yeah oh boy woman soul mind eyes kiss lady sweet bad new " +
  "old last first black white red gold wild free high out up").split(" ");
const SYLLABLES = ("ka lo mi ra sun ber al ven tor li mar quin el dra ea mon ar is ve ly ing " +
  "sha ow er zu pel gri ston har wick fen ol du bra cas tel nor vik san ta ro mo ne ki ja bel " +
  "rin go sto fa").split(" ");

/** `n` tracks with ids 1..n. */
export function syntheticTracks(n: number, seed = 1): TrackRecord[] {
  const r = prng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const vocab = [...COMMON];
  const seen = new Set(vocab);
  const vocabSize = Math.max(2000, Math.min(60_000, n));
  while (vocab.length < vocabSize) {
    let w = "";
    const syllables = 1 + Math.floor(r() * 3.2);
    for (let j = 0; j < syllables; j++) w += pick(SYLLABLES);
    if (!seen.has(w)) {
      seen.add(w);
      vocab.push(w);
    }
  }
  const logV = Math.log(vocab.length);
  const cap = (w: string) => w[0].toUpperCase() + w.slice(1);
  const zipfWord = () => vocab[Math.min(vocab.length - 1, Math.floor(Math.exp(r() * logV)) - 1)];
  const words = (k: number) => Array.from({ length: k }, () => cap(zipfWord())).join(" ");
  const rareWord = () =>
    cap(vocab[COMMON.length + Math.floor(r() * (vocab.length - COMMON.length))]);
  const artists = Array.from(
    { length: Math.max(10, Math.floor(n / 12)) },
    () => (r() < 0.3 ? "The " : "") + rareWord() + (r() < 0.5 ? " " + rareWord() : ""),
  );
  const genres = Array.from({ length: 80 }, () => rareWord() + (r() < 0.3 ? " Rock" : ""));
  const out: TrackRecord[] = [];
  while (out.length < n) {
    const artist = pick(artists);
    const album = words(1 + Math.floor(r() * 3));
    const year = 1950 + Math.floor(r() * 75);
    const genre = pick(genres);
    const tracks = 8 + Math.floor(r() * 8);
    for (let t = 1; t <= tracks && out.length < n; t++) {
      const title = words(1 + Math.floor(r() * 4));
      out.push({
        id: out.length + 1,
        originId: 1,
        relPath: `${artist}/${album}/${String(t).padStart(2, "0")} - ${title}.flac`,
        ext: "flac",
        size: 1_000_000 + Math.floor(r() * 9_000_000),
        mtimeMs: 1_700_000_000_000,
        title,
        artist,
        albumArtist: artist,
        album,
        genre,
        year,
        track: t,
      });
    }
  }
  return out;
}

/** Realistic queries against `tracks`: artists, titles, albums, prefixes, typos, pairs. */
export function syntheticQueries(tracks: TrackRecord[], count: number, seed = 2): string[] {
  const r = prng(seed);
  const out: string[] = [];
  const lastWord = (s: string) => s.split(" ").at(-1)!;
  for (let i = 0; out.length < count; i++) {
    const t = tracks[Math.floor(r() * tracks.length)];
    const kinds = [
      t.artist!,
      t.title!,
      t.album!,
      `${t.artist} ${t.title}`,
      lastWord(t.artist!).slice(0, 4).toLowerCase(),
      lastWord(t.artist!).replace(/[aeiou]/, "y"),
      `${lastWord(t.artist!)} ${String(t.year)}`,
      t.title!.split(" ")[0].toLowerCase(),
      `${t.album} ${t.genre}`,
    ];
    out.push(kinds[i % kinds.length]);
  }
  return out;
}

const ACCENTS: Record<string, string[]> = {
  a: ["á", "à", "â", "ä", "å", "ã"],
  e: ["é", "è", "ê", "ë"],
  i: ["í", "ì", "î", "ï"],
  o: ["ó", "ò", "ô", "ö", "ø", "õ"],
  u: ["ú", "ù", "û", "ü"],
  n: ["ñ"],
  c: ["ç"],
  s: ["š", "ś"],
  z: ["ž"],
};
const CJK =
  ("東京事変椎名林檎宇多田光坂本龍一久石譲美空雲雀山下達郎竹内まりや中島みゆき松任谷由実" +
    "周杰倫王菲鄧麗君張學友陳奕迅孫燕姿林俊傑五月天蔡依林李宗盛방탄소년단아이유빅뱅소녀시대")
    .split("");
const KANA = "のはなさくらゆめそらうたかぜほしみちこころあいひかりナツハルフユアキ".split("");

/**
 * `n` tracks like syntheticTracks, with the variety of a real collection: accented names
 * (about 8% of artists, and their words in titles), CJK artists and titles (about 6%), and
 * duplicates (about 3% of tracks are the same recording again under another path).
 */
export function varietyTracks(n: number, seed = 1): TrackRecord[] {
  const base = syntheticTracks(n, seed);
  const r = prng(seed + 1000);
  const accent = (s: string) =>
    s.replace(
      /[aeiouncsz]/g,
      (ch) => (r() < 0.35 ? ACCENTS[ch][Math.floor(r() * ACCENTS[ch].length)] : ch),
    );
  const cjk = (len: number, chars: string[]) =>
    Array.from({ length: len }, () => chars[Math.floor(r() * chars.length)]).join("");
  const renamed = new Map<string, string>();
  const artistOf = (a: string): string => {
    let v = renamed.get(a);
    if (v === undefined) {
      const x = r();
      v = x < 0.08 ? accent(a) : x < 0.14 ? cjk(2 + Math.floor(r() * 4), CJK) : a;
      renamed.set(a, v);
    }
    return v;
  };
  for (let i = 0; i < base.length; i++) {
    const t = base[i];
    const artist = artistOf(t.artist!);
    const cjkArtist = /[\u3040-\u9fff\uac00-\ud7af]/.test(artist);
    const title = cjkArtist && r() < 0.8
      ? cjk(2 + Math.floor(r() * 6), r() < 0.5 ? KANA : CJK)
      : artist !== t.artist && r() < 0.5
      ? accent(t.title!)
      : t.title!;
    const album = cjkArtist && r() < 0.7 ? cjk(2 + Math.floor(r() * 4), CJK) : t.album!;
    const dir = `${artist}/${album}`;
    base[i] = {
      ...t,
      artist,
      albumArtist: artist,
      title,
      album,
      relPath: `${dir}/${String(t.track).padStart(2, "0")} - ${title}.flac`,
    };
    if (i > 100 && r() < 0.03) {
      const dup = base[Math.floor(r() * i)];
      base[i] = { ...dup, id: t.id, relPath: `Duplicates/${dup.relPath}` };
    }
  }
  return base;
}
