/**
 * Random and mutated requests into a ProtocolServer for a bounded time (FUZZ_MS, default 1500):
 * it must never throw, every reply must be well-formed (its length field equal to its size, an
 * errno in range, an error reply being the header alone), no request may be answered twice,
 * and nothing may be left in flight. The seed is printed; FUZZ_SEED replays a run.
 */
import assert from "node:assert/strict";
import { DemoFs } from "./demo_fs.ts";
import { Op } from "./opcodes.ts";
import { readIn, request, u32, u64, Wire } from "./testdata/wire.ts";
import { setU64 } from "./structs.ts";
import { Prng } from "../../tests/fixtures/prng.ts";

function corpus(): Uint8Array[] {
  return [
    request(Op.INIT, 0, 0, u32(7, 45, 131072, 0x7fffffff, 0x20), new Uint8Array(44)),
    request(Op.LOOKUP, 0, 1, "Artists"),
    request(Op.LOOKUP, 0, 2, "a.txt"),
    request(Op.GETATTR, 0, 3, u64(0, 0)),
    request(Op.OPEN, 0, 3, u32(0, 0)),
    request(Op.READ, 0, 3, readIn(0, 3, 4096)),
    request(Op.RELEASE, 0, 3, u64(0, 0, 0)),
    request(Op.OPENDIR, 0, 2, u32(0, 0)),
    request(Op.READDIRPLUS, 0, 2, readIn(1, 0, 4096)),
    request(Op.READDIR, 0, 1, readIn(1, 2, 300)),
    request(Op.RELEASEDIR, 0, 2, u64(1, 0, 0)),
    request(Op.READLINK, 0, 4),
    request(Op.STATFS, 0, 1),
    request(Op.GETXATTR, 0, 3, u32(0, 0), "user.k"),
    request(Op.GETXATTR, 0, 3, u32(64, 0), "user.k"),
    request(Op.LISTXATTR, 0, 3, u32(0, 0)),
    request(Op.FORGET, 0, 3, u64(1)),
    request(Op.BATCH_FORGET, 0, 0, u32(2, 0), u64(3, 1), u64(2, 1)),
    request(Op.INTERRUPT, 0, 0, u64(5)),
    request(Op.FLUSH, 0, 3, new Uint8Array(24)),
    request(Op.MKDIR, 0, 1, u32(0o755, 0), "new"),
  ];
}

function mutate(rng: Prng, base: Uint8Array): Uint8Array {
  let b = base.slice();
  const kind = rng.int(0, 6);
  if (kind === 0) {
    for (let i = rng.int(1, 4); i > 0; i--) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
  } else if (kind === 1) {
    b = b.slice(0, rng.int(0, b.length)); // truncated, header length left as it was
  } else if (kind === 2) {
    const longer = new Uint8Array(b.length + rng.int(1, 64));
    longer.set(b);
    for (let i = b.length; i < longer.length; i++) longer[i] = rng.int(0, 255);
    b = longer;
    if (rng.chance(0.5)) new DataView(b.buffer).setUint32(0, b.length, true);
  } else if (kind === 3) {
    new DataView(b.buffer).setUint32(0, rng.int(0, 0xffffffff), true);
  } else if (kind === 4) {
    new DataView(b.buffer).setUint32(
      4,
      rng.chance(0.8) ? rng.int(0, 60) : rng.int(0, 0xffffffff),
      true,
    );
  } else if (kind === 5 && b.length >= 24) {
    setU64(
      new DataView(b.buffer),
      16,
      rng.chance(0.5) ? rng.int(0, 10) : rng.int(0, 2 ** 32) * 2 ** 20,
    );
  } else {
    // Body fields: offsets, sizes, counts at random.
    for (let off = 40; off + 4 <= b.length; off += 4) {
      if (rng.chance(0.3)) new DataView(b.buffer).setUint32(off, rng.int(0, 0xffffffff), true);
    }
  }
  return b;
}

Deno.test("protocol fuzz: random and mutated requests never crash or get two answers", async () => {
  const seed = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 2 ** 31);
  const budget = Number(Deno.env.get("FUZZ_MS") ?? 1500);
  const rng = new Prng(seed);
  const fs = new DemoFs({ nowMs: 1_700_000_000_000 });
  const ino = fs.addFile("Artists/a.txt", "hello, world\n");
  for (let i = 0; i < 40; i++) fs.addFile(`Artists/${"x".repeat(i * 5 + 1)}`, "y");
  fs.addSymlink("link", "Artists/a.txt");
  fs.setXattr(ino, "user.k", "value");
  const w = new Wire(fs, { maxRead: 65536 });
  const base = corpus();
  const answered = new Map<number, number>();
  let sent = 0;
  let unique = 1;
  const start = performance.now();
  try {
    while (performance.now() - start < budget) {
      let req: Uint8Array;
      const pick = rng.next();
      if (pick < 0.15) {
        req = new Uint8Array(rng.int(0, 200));
        for (let i = 0; i < req.length; i++) req[i] = rng.int(0, 255);
      } else {
        const b = base[rng.int(0, base.length - 1)];
        req = pick < 0.3 ? b.slice() : mutate(rng, b);
        // Every request gets an id of its own (mutations may have hit the old one).
        if (req.length >= 16) setU64(new DataView(req.buffer), 8, unique++);
      }
      sent++;
      const before = w.replies.length;
      w.server.handle(req); // must not throw
      if (sent % 64 === 0) await new Promise((r) => setTimeout(r, 0));
      for (const r of w.replies.slice(before)) {
        answered.set(r.unique, (answered.get(r.unique) ?? 0) + 1);
      }
    }
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
    for (const r of w.replies) {
      assert.equal(r.len, r.bytes.length, "length field = bytes sent");
      assert.ok(r.len >= 16);
      assert.ok(r.error >= 0 && r.error < 1000, `errno ${r.error}`);
      if (r.error !== 0) assert.equal(r.len, 16, "an error reply is the header alone");
    }
    const counts = new Map<number, number>();
    for (const r of w.replies) counts.set(r.unique, (counts.get(r.unique) ?? 0) + 1);
    for (const [u, n] of counts) {
      // Random bytes may carry any unique; the ones we numbered are answered at most once.
      if (u > 0 && u < unique) assert.ok(n <= 1, `request ${u} answered ${n} times (seed ${seed})`);
    }
    assert.equal(w.server.stats.requests, sent);
    assert.equal(w.server.stats.inflight, 0, "nothing left in flight");
    assert.ok(sent > 1000, `only ${sent} requests in ${budget} ms`);
  } catch (e) {
    console.error(`protocol fuzz failed with FUZZ_SEED=${seed}`);
    throw e;
  }
});
