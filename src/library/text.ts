/**
 * Tag text as users mean it (issue 10, rule 2). Many taggers and ffmpeg write UTF-8 bytes where
 * the container says ISO-8859-1 (RIFF INFO, ID3v1, ID3v2 frames with encoding byte 0, old APE
 * tags), and music-metadata then decodes them one byte per character: `MÃ¶tley CrÃ¼e`. Text
 * whose characters all fit in one byte and whose bytes form valid UTF-8 with at least one
 * multi-byte sequence is decoded again as UTF-8; genuine Latin-1 text almost never does (an
 * accented letter followed by the right continuation symbols). Then it is NFC-normalised, line
 * breaks and tabs become spaces, other control characters go, and the ends are trimmed.
 */

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Anything but printable ASCII: the only strings that need more than a trim. */
const NOT_PLAIN = /[^\x20-\x7e]/;
const BREAKS = /[\t\n\v\f\r\u0085\u2028\u2029]+/g;
// C0 and C1 controls and DEL; also the BOM and the replacement-prone noncharacters taggers leave.
// deno-lint-ignore no-control-regex -- matching controls is the point
const CONTROLS = /[\x00-\x1f\x7f-\x9f\ufeff\ufffe\uffff]/g;

/** `s` re-decoded as UTF-8 when it is UTF-8 bytes read as Latin-1, else `s`. */
export function fixMojibake(s: string): string {
  let multi = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return s;
    if (c >= 0xc2 && c <= 0xf4) multi = true;
  }
  if (!multi) return s;
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    return s;
  }
}

/** Clean tag text: mojibake repaired, NFC, controls stripped, trimmed (may return `""`). */
export function cleanText(s: string): string {
  if (!NOT_PLAIN.test(s)) return s.trim();
  return fixMojibake(s).normalize("NFC").replace(BREAKS, " ").replace(CONTROLS, "").trim();
}
