/**
 * Problem reasons are shown to whoever reads problems.txt or `musicfs status`, who may not be
 * allowed to read the file itself. Parser messages quote what they found ("Atom size exceeds
 * remaining bytes: 1919905652" is the bytes "root" of /etc/shadow read as a size), so a
 * reason keeps what went wrong but never what the file holds: numbers, quoted text, chunk
 * ids and any non-ASCII text become `…`.
 *
 * @module
 */

/** Longest reason kept, in characters (a parser message can be arbitrarily long). */
const MAX_REASON = 200;

const QUOTED = /(["'`])(?:(?!\1).)*\1/g;
const NOT_PLAIN = /\S*[^\x20-\x7e]\S*/g;
// A number on its own (decimal, hex, signed, with a fraction or exponent), or a run of hex
// digits holding at least one digit and one letter, as a byte dump reads.
const NUMBER =
  /(?<![\w.-])(?:[-+]?(?:0x[0-9a-f]+|\d+(?:\.\d+)?(?:e[-+]?\d+)?)|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,})(?![\w-])/gi;
// A four-character code read from the file: `xxxx chunk ...`, `atom xxxx`.
const FOURCC =
  /(?<![\w])\S{4}(?= (?:chunk|atom|box|frame)\b)|(?<=\b(?:chunk|atom|box|frame|ID|id) )\S{4}(?!\S)/g;
// `...: value` at the end of a message (or of a parenthesised part): a value read from the file.
const TRAILING_VALUE = /: ([^\s:()…]+)(?=\)?$)/;

/** `reason` with everything it quotes from a file replaced by `…` (see the module docs). */
export function safeReason(reason: string): string {
  let s = reason.replace(QUOTED, "…")
    .replace(NOT_PLAIN, "…")
    .replace(NUMBER, "…")
    .replace(FOURCC, "…")
    .replace(TRAILING_VALUE, ": …")
    .replace(/…(?:\s*…)+/g, "…")
    .trim();
  if (s.length > MAX_REASON) s = s.slice(0, MAX_REASON - 1) + "…";
  return s || "unreadable";
}
