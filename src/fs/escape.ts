/**
 * Names and reasons come from the sources (file names, parser messages): any byte is possible,
 * a newline included. Where they are printed one per line (problems.txt, `musicfs status`),
 * control characters are escaped so that a name cannot forge a line or drive the terminal.
 *
 * @module
 */

// C0 controls, DEL, C1 controls, the Unicode line/paragraph separators and the bidirectional
// overrides and isolates (which can make a name display as another), and the backslash itself,
// so that an escape in the output always means one.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  switch (c) {
    case "\\":
      return "\\\\";
    case "\n":
      return "\\n";
    case "\r":
      return "\\r";
    case "\t":
      return "\\t";
  }
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
}

/**
 * `text` with control characters written as escapes (`\n`, `\x1b`, `\u202e`) and `\` as `\\`;
 * text without any is returned as is.
 */
export function escapeControl(text: string): string {
  UNSAFE.lastIndex = 0;
  return UNSAFE.test(text) ? text.replace(UNSAFE, escapeChar) : text;
}
