import assert from "node:assert/strict";
import { safeReason } from "./reason.ts";

Deno.test("safeReason: numbers decoded from the file are not reported", () => {
  assert.equal(
    safeReason("Atom size exceeds remaining bytes: 1919905652"),
    "Atom size exceeds remaining bytes: …",
  );
  assert.equal(
    safeReason("truncated: the header declares 1919905652 bytes, the file has 631"),
    "truncated: the header declares … bytes, the file has …",
  );
  assert.equal(safeReason("Invalid metadata pointer: -12.5e3"), "Invalid metadata pointer: …");
  assert.equal(safeReason("bad value 0x726f6f74 here"), "bad value … here");
});

Deno.test("safeReason: quoted bytes, chunk ids and odd text are not reported", () => {
  assert.equal(
    safeReason('FourCC contains invalid characters: 726f6f74 "root"'),
    "FourCC contains invalid characters: …",
  );
  assert.equal(safeReason("Unsupported AIFF type: root"), "Unsupported AIFF type: …");
  assert.equal(
    safeReason("root chunk exceeds remaining file size"),
    "… chunk exceeds remaining file size",
  );
  assert.equal(safeReason("unexpected id3 frame id r\u00f6\u00f6t"), "unexpected id3 frame id …");
  assert.equal(safeReason("Invalid Chunk-ID, expected 'FORM'"), "Invalid Chunk-ID, expected …");
  assert.equal(
    safeReason("corrupt or truncated (Offset is outside the bounds of the DataView)"),
    "corrupt or truncated (Offset is outside the bounds of the DataView)",
  );
});

Deno.test("safeReason: the reason itself is kept", () => {
  for (
    const r of [
      "no audio stream found",
      "empty file",
      "Failed to determine audio format",
      "not an MPEG audio stream: no run of valid frame headers",
      "truncated: the last Ogg page is incomplete",
      "cannot open: permission denied",
      "Expected even number of octets for 16-bit unicode string",
      "Invalid ID3v2.4 header",
    ]
  ) assert.equal(safeReason(r), r);
  assert.equal(safeReason("x".repeat(500)).length, 200);
});

Deno.test("a scan lists secret-looking files with reasons that quote none of their bytes", async () => {
  const { Database } = await import("./db.ts");
  const { Scanner } = await import("./scanner.ts");
  const { ParserPool } = await import("./pool.ts");
  const { Walker } = await import("./walker.ts");
  const lib = await Deno.makeTempDir({ prefix: "musicfs-lib-" });
  const state = await Deno.makeTempDir({ prefix: "musicfs-state-" });
  const pool = new ParserPool();
  const walker = new Walker();
  const db = Database.open(`${state}/library.db`);
  const scanner = new Scanner(db, { pool, walker });
  try {
    // What a link to /etc/shadow serves, under every audio extension.
    const secret = "root:$y$j9T$Zm9vYmFy$c2VjcmV0aGFzaA:19800:0:99999:7:::\n" +
      "daemon:*:19800:0:99999:7:::\nnobody:*:19800:0:99999:7:::\n";
    const exts = ["m4a", "mp3", "flac", "ogg", "opus", "wav", "aiff", "wma", "ape", "wv", "mpc"];
    for (const ext of exts) await Deno.writeTextFile(`${lib}/shadow.${ext}`, secret);
    await scanner.scan([lib]);
    const problems = db.problems();
    assert.equal(problems.length, exts.length, JSON.stringify(problems));
    const words = new Set(secret.split(/[^A-Za-z0-9$]+/).filter((w) => w.length >= 3));
    // The secret read as big- or little-endian integers of 2, 4 and 8 bytes.
    const bytes = new TextEncoder().encode(secret);
    const dv = new DataView(bytes.buffer);
    const numbers = new Set<string>();
    for (let i = 0; i + 8 <= bytes.length; i++) {
      for (const le of [false, true]) {
        numbers.add(String(dv.getUint16(i, le)));
        numbers.add(String(dv.getUint32(i, le)));
        numbers.add(String(dv.getInt32(i, le)));
        numbers.add(String(dv.getBigUint64(i, le)));
      }
    }
    for (const p of problems) {
      assert.ok(p.reason.length > 3, `${p.relPath}: a reason is given`);
      for (const tok of p.reason.split(/[^A-Za-z0-9$]+/)) {
        assert.ok(!words.has(tok), `${p.relPath}: "${p.reason}" quotes ${tok}`);
        assert.ok(!numbers.has(tok), `${p.relPath}: "${p.reason}" reports ${tok}`);
      }
    }
  } finally {
    await scanner.close();
    db.close();
    await Deno.remove(lib, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
});
