/**
 * The FUSE protocol byte for byte, with no kernel: requests built as the kernel sends them go
 * into a ProtocolServer over a DemoFs, and the replies are compared with golden bytes (checked
 * field by field against include/uapi/linux/fuse.h) or decoded field by field. These run with
 * /dev/fuse absent; the kernel round trips are in tests/fuse_test.ts.
 */
import assert from "node:assert/strict";
import { DemoFs } from "./demo_fs.ts";
import type { FuseOperations } from "./ops.ts";
import { Op } from "./opcodes.ts";
import { Errno } from "../sys/errno.ts";
import { hex, readIn, request, u32, u64, Wire } from "./testdata/wire.ts";
import { getU64 } from "./structs.ts";
import { AttrShare } from "./attr_share.ts";

const NOW = 1_700_000_000_500; // 0x6553f100 s + 500 ms
const TEXT = "hello, world\n";

/** A small tree: /Artists (ino 2) holding a.txt (ino 3), /link (ino 4) -> Artists/a.txt. */
function demo(): DemoFs {
  const fs = new DemoFs({ uid: 1000, gid: 100, nowMs: NOW });
  fs.addFile("Artists/a.txt", TEXT);
  fs.addSymlink("link", "Artists/a.txt");
  return fs;
}

const INIT_IN_7_45 = [u32(7, 45, 131072, 0x7fffffff, 0x20), new Uint8Array(44)];

async function ready(fs = demo(), opts = {}): Promise<Wire> {
  const w = new Wire(fs, { entryTtlMs: 1500, attrTtlMs: 2000, ...opts });
  const r = await w.call(request(Op.INIT, 1, 0, ...INIT_IN_7_45));
  assert.equal(r.error, 0);
  return w;
}

// fuse_attr of a.txt (ino 3, 13 bytes, 0o100444, mtime NOW) as the golden replies carry it.
const ATTR_A_TXT = `
  0300000000000000 | 0d00000000000000 | 0100000000000000
  00f1536500000000 | 00f1536500000000 | 00f1536500000000
  0065cd1d | 0065cd1d | 0065cd1d
  24810000 | 01000000 | e8030000 | 64000000 | 00000000 | 00000100 | 00000000`;

Deno.test("protocol: INIT golden reply (7.45, flags the kernel offered, no passthrough)", async () => {
  const w = new Wire(demo());
  const r = await w.call(request(Op.INIT, 1, 0, ...INIT_IN_7_45));
  assert.deepEqual(
    r.bytes,
    hex(`
      50000000 | 00000000 | 0100000000000000
      07000000 | 2d000000 | 00000200 | 0170c440
      4000 | 3000 | 00001000 | 01000000 | 0001 | 0000 | 00000000 | 00000000
      ${"00".repeat(24)}`),
  );
  assert.equal(w.server.minor, 45);
});

Deno.test("protocol: INIT answers only offered flags, the old 24-byte reply, EPROTO for 8.x", async () => {
  const w = new Wire(demo());
  // A 7.22 kernel: 16-byte init_in, offers only ASYNC_READ and a flag we never take (1 << 2).
  const r = await w.call(request(Op.INIT, 1, 0, u32(7, 22, 65536, 0b101)));
  assert.equal(r.len, 16 + 24);
  assert.equal(r.v.getUint32(4, true), 22);
  assert.equal(r.v.getUint32(12, true), 1, "only ASYNC_READ");
  const bad = await new Wire(demo()).call(request(Op.INIT, 9, 0, u32(8, 0, 0, 0)));
  assert.equal(bad.error, Errno.EPROTO);
  assert.equal(bad.len, 16);
});

Deno.test("protocol: INIT with passthrough offered sets flags2 bit 5 and max_stack_depth 1", async () => {
  const backing = { open: () => 7, close: () => {} };
  const w = new Wire(demo(), { passthrough: true, backing });
  const r = await w.call(request(Op.INIT, 1, 0, ...INIT_IN_7_45));
  assert.equal(r.v.getUint32(32, true), 0x20);
  assert.equal(r.v.getUint32(36, true), 1);
  assert.equal(w.server.passthrough, true);
  // Not offered by the kernel: not taken.
  const w2 = new Wire(demo(), { passthrough: true, backing });
  await w2.call(request(Op.INIT, 1, 0, u32(7, 45, 131072, 0x7fffffff, 0), new Uint8Array(44)));
  assert.equal(w2.server.passthrough, false);
});

Deno.test("protocol: LOOKUP golden reply, ENOENT, and the lookup count", async () => {
  const w = await ready();
  const r = await w.call(request(Op.LOOKUP, 2, 2, "a.txt"));
  assert.deepEqual(
    r.bytes,
    hex(`
      90000000 | 00000000 | 0200000000000000
      0300000000000000 | 0000000000000000 | 0100000000000000 | 0200000000000000
      0065cd1d | 00000000
      ${ATTR_A_TXT}`),
  );
  assert.equal(w.server.lookupCounts.get(3), 1);
  await w.call(request(Op.LOOKUP, 3, 2, "a.txt"));
  assert.equal(w.server.lookupCounts.get(3), 2);
  const miss = await w.call(request(Op.LOOKUP, 4, 2, "missing"));
  assert.deepEqual(miss.bytes, hex("10000000 | feffffff | 0400000000000000"));
  const notDir = await w.call(request(Op.LOOKUP, 5, 3, "x"));
  assert.equal(notDir.error, Errno.ENOTDIR);
});

Deno.test("protocol: GETATTR golden reply; unknown inode ENOENT", async () => {
  const w = await ready();
  const r = await w.call(request(Op.GETATTR, 3, 3, u64(0, 0)));
  assert.deepEqual(
    r.bytes,
    hex(`
      78000000 | 00000000 | 0300000000000000
      0200000000000000 | 00000000 | 00000000
      ${ATTR_A_TXT}`),
  );
  assert.equal((await w.call(request(Op.GETATTR, 4, 99, u64(0, 0)))).error, Errno.ENOENT);
});

Deno.test("protocol: OPEN golden reply; write access and O_TRUNC are EROFS", async () => {
  const w = await ready();
  const r = await w.call(request(Op.OPEN, 6, 3, u32(0, 0)));
  // fh 0, open_flags KEEP_CACHE | NOFLUSH, backing id 0.
  assert.deepEqual(
    r.bytes,
    hex("20000000 00000000 0600000000000000 0000000000000000 22000000 00000000"),
  );
  for (const flags of [1, 2, 0o1000]) {
    assert.equal((await w.call(request(Op.OPEN, 7, 3, u32(flags, 0)))).error, Errno.EROFS);
  }
  assert.equal((await w.call(request(Op.OPEN, 8, 2, u32(0, 0)))).error, Errno.EISDIR);
});

Deno.test("protocol: passthrough backing ids are shared per inode and closed on the last RELEASE", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/src.bin`, "source bytes");
    const fs = demo();
    const ino = fs.addSource("src.bin", `${dir}/src.bin`);
    const opened: number[] = [];
    const closed: number[] = [];
    const backing = {
      open: (fd: number) => (opened.push(fd), 40 + opened.length),
      close: (id: number) => void closed.push(id),
    };
    const w = await ready(fs, { passthrough: true, backing });
    const a = await w.call(request(Op.OPEN, 10, ino, u32(0, 0)));
    const b = await w.call(request(Op.OPEN, 11, ino, u32(0, 0)));
    assert.equal(a.v.getUint32(8, true), 0xa0, "NOFLUSH | PASSTHROUGH, no KEEP_CACHE");
    assert.equal(a.v.getInt32(12, true), 41);
    assert.equal(b.v.getInt32(12, true), 41, "one backing id per inode");
    assert.equal(opened.length, 1);
    await w.call(request(Op.RELEASE, 12, ino, u64(getU64(a.v, 0), 0, 0)));
    assert.deepEqual(closed, []);
    await w.call(request(Op.RELEASE, 13, ino, u64(getU64(b.v, 0), 0, 0)));
    assert.deepEqual(closed, [41]);
    // A refused backing open serves that open alone in userspace: passthrough stays on.
    let refuse = true;
    const w2 = await ready(fs, {
      passthrough: true,
      backing: { open: () => refuse ? -1 : 50, close: () => {} },
    });
    const c = await w2.call(request(Op.OPEN, 14, ino, u32(0, 0)));
    assert.equal(c.v.getUint32(8, true), 0x22, "NOFLUSH | KEEP_CACHE: a classic open");
    assert.equal(w2.server.passthrough, true, "one odd source does not end passthrough");
    assert.equal(w2.server.stats.passthroughFallbacks, 1);
    await w2.call(request(Op.RELEASE, 15, ino, u64(getU64(c.v, 0), 0, 0)));
    refuse = false;
    const d = await w2.call(request(Op.OPEN, 16, ino, u32(0, 0)));
    assert.equal(d.v.getUint32(8, true), 0xa0);
    assert.equal(d.v.getInt32(12, true), 50);
    await w2.call(request(Op.RELEASE, 17, ino, u64(getU64(d.v, 0), 0, 0)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("protocol: an open of another version than the backing file in use answers EIO", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/src.bin`, "source bytes");
    const fs = demo();
    const ino = fs.addSource("src.bin", `${dir}/src.bin`);
    let version = "v1";
    const released: number[] = [];
    const ops: FuseOperations = {
      lookup: (p, n) => fs.lookup(p, n),
      getattr: (i) => fs.getattr(i),
      readdir: (i) => fs.readdir(i),
      read: (i, fh, off, dst, ctx) => fs.read(i, fh, off, dst, ctx),
      open: async (i, flags, ctx) => ({
        ...(await fs.open(i, flags, ctx)),
        backingVersion: version,
      }),
      release: (i, fh) => (released.push(fh), fs.release(i, fh)),
    };
    const w = await ready(ops as unknown as DemoFs, {
      passthrough: true,
      backing: { open: () => 41, close: () => {} },
    });
    const a = await w.call(request(Op.OPEN, 10, ino, u32(0, 0)));
    assert.equal(a.v.getInt32(12, true), 41);
    version = "v2";
    const b = await w.call(request(Op.OPEN, 11, ino, u32(0, 0)));
    assert.equal(b.error, Errno.EIO, "never the older version's backing file");
    assert.equal(released.length, 1, "the refused open's handle is released");
    await w.call(request(Op.RELEASE, 12, ino, u64(getU64(a.v, 0), 0, 0)));
    const c = await w.call(request(Op.OPEN, 13, ino, u32(0, 0)));
    assert.equal(c.v.getInt32(12, true), 41, "once the old one is closed, the new version opens");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("protocol: READ golden reply, clipped at the end, empty past it, size capped", async () => {
  const w = await ready(demo(), { maxRead: 8192 });
  const r = await w.call(request(Op.READ, 7, 3, readIn(0, 7, 4096)));
  assert.deepEqual(r.bytes, hex("16000000 00000000 0700000000000000 776f726c640a")); // "world\n"
  assert.equal((await w.call(request(Op.READ, 8, 3, readIn(0, 13, 4096)))).len, 16);
  assert.equal((await w.call(request(Op.READ, 9, 3, readIn(0, 0, 1 << 20)))).len, 16 + 13);
  const big = new DemoFs({ nowMs: NOW });
  const ino = big.addFile("big", new Uint8Array(100_000).fill(7));
  const wb = await ready(big, { maxRead: 8192 });
  const got = await wb.call(request(Op.READ, 10, ino, readIn(0, 0, 65536)));
  assert.equal(got.len, 16 + 8192, "never more than max_read");
});

interface DirRecord {
  nodeid: number;
  ino: number;
  cookie: number;
  type: number;
  name: string;
}

function parseDirents(body: Uint8Array, plus: boolean): DirRecord[] {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out: DirRecord[] = [];
  for (let off = 0; off < body.length;) {
    const nodeid = plus ? getU64(v, off) : 0;
    const d = off + (plus ? 128 : 0);
    const namelen = v.getUint32(d + 16, true);
    const name = new TextDecoder().decode(body.subarray(d + 24, d + 24 + namelen));
    out.push({
      nodeid,
      ino: getU64(v, d),
      cookie: getU64(v, d + 8),
      type: v.getUint32(d + 20, true),
      name,
    });
    const rec = (24 + namelen + 7) & ~7;
    for (let i = d + 24 + namelen; i < d + rec; i++) assert.equal(body[i], 0, "padding is zero");
    off = d + rec;
  }
  return out;
}

for (const plus of [true, false]) {
  const op = plus ? "READDIRPLUS" : "READDIR";
  Deno.test(`protocol: ${op} pages across buffer ends and resumes at each cookie`, async () => {
    const fs = new DemoFs({ uid: 1000, gid: 100, nowMs: NOW });
    const names: string[] = [];
    for (let i = 0; i < 300; i++) {
      // Names of every length from 1 to 255 bytes, some multibyte, so records straddle pages.
      const name = i % 7 === 0
        ? `Björk – ${"é".repeat(i % 120)}${i}`
        : `${"n".repeat(1 + (i * 37) % 250)}${i}`;
      fs.addFile(`d/${name}`, "x");
      names.push(name);
    }
    const w = await ready(fs);
    const dirIno = (await w.call(request(Op.LOOKUP, 2, 1, "d"))).v.getUint32(0, true);
    const open = await w.call(request(Op.OPENDIR, 3, dirIno, u32(0, 0)));
    const fh = getU64(open.v, 0);
    const seen: DirRecord[] = [];
    let cookie = 0;
    let pages = 0;
    for (let unique = 10;; unique++) {
      const size = 1000 + (unique * 389) % 3000; // odd sizes, like a kernel with odd buffers
      const r = await w.call(
        request(plus ? Op.READDIRPLUS : Op.READDIR, unique, dirIno, readIn(fh, cookie, size)),
      );
      assert.equal(r.error, 0);
      assert.ok(r.body.length <= size, `page of ${r.body.length} > ${size}`);
      const recs = parseDirents(r.body, plus);
      if (recs.length === 0) break;
      pages++;
      seen.push(...recs);
      cookie = recs.at(-1)!.cookie;
    }
    assert.ok(pages > 10, `only ${pages} pages`);
    assert.deepEqual(seen.map((r) => r.name), [".", "..", ...names]);
    assert.deepEqual(seen.map((r) => r.cookie), seen.map((_, i) => i + 1));
    assert.equal(seen[0].ino, dirIno);
    assert.equal(seen[1].ino, 1, "the parent seen through LOOKUP");
    for (const r of seen.slice(2)) assert.equal(r.type, 8, "DT_REG");
    if (plus) {
      assert.equal(seen[0].nodeid, 0, "no entry (and no lookup) for .");
      assert.equal(seen[1].nodeid, 0, "no entry (and no lookup) for ..");
      for (const r of seen.slice(2)) {
        assert.equal(r.nodeid, r.ino);
        assert.equal(
          w.server.lookupCounts.get(r.ino),
          1,
          "each READDIRPLUS entry counts one lookup",
        );
      }
    } else {
      assert.equal(w.server.lookupCounts.size, 1, "plain READDIR counts no lookups");
    }
    // A record bigger than the whole buffer: an empty page would end the listing early, so the
    // kernel never asks that small; we still answer cleanly (empty) rather than overrun.
    const tiny = await w.call(request(Op.READDIR, 99, dirIno, readIn(fh, 5, 8)));
    assert.equal(tiny.len, 16);
    await w.call(request(Op.RELEASEDIR, 100, dirIno, u64(fh, 0, 0)));
    assert.equal(w.server.openDirs, 0);
    const gone = await w.call(request(Op.READDIR, 101, dirIno, readIn(fh, 0, 4096)));
    assert.equal(gone.error, Errno.EBADF);
  });
}

Deno.test("protocol: READLINK golden reply; EINVAL on a file", async () => {
  const w = await ready();
  const r = await w.call(request(Op.READLINK, 5, 4));
  assert.deepEqual(
    r.bytes,
    new Uint8Array([
      ...hex("1d000000 00000000 0500000000000000"),
      ...new TextEncoder().encode("Artists/a.txt"),
    ]),
  );
  assert.equal((await w.call(request(Op.READLINK, 6, 3))).error, Errno.EINVAL);
});

Deno.test("protocol: GETXATTR size probe, then the value; ERANGE, ENODATA; LISTXATTR", async () => {
  const fs = demo();
  fs.setXattr(3, "user.musicfs.source", "/music/a.flac");
  fs.setXattr(3, "user.other", "1");
  const w = await ready(fs);
  const probe = await w.call(request(Op.GETXATTR, 20, 3, u32(0, 0), "user.musicfs.source"));
  assert.deepEqual(probe.bytes, hex("18000000 00000000 1400000000000000 0d000000 00000000"));
  const value = await w.call(request(Op.GETXATTR, 21, 3, u32(13, 0), "user.musicfs.source"));
  assert.equal(new TextDecoder().decode(value.body), "/music/a.flac");
  assert.equal(value.len, 16 + 13);
  const small = await w.call(request(Op.GETXATTR, 22, 3, u32(12, 0), "user.musicfs.source"));
  assert.equal(small.error, Errno.ERANGE);
  const none = await w.call(request(Op.GETXATTR, 23, 3, u32(64, 0), "user.none"));
  assert.equal(none.error, Errno.ENODATA);
  const listProbe = await w.call(request(Op.LISTXATTR, 24, 3, u32(0, 0)));
  assert.equal(listProbe.v.getUint32(0, true), "user.musicfs.source\0user.other\0".length);
  const list = await w.call(request(Op.LISTXATTR, 25, 3, u32(100, 0)));
  assert.equal(new TextDecoder().decode(list.body), "user.musicfs.source\0user.other\0");
});

Deno.test("protocol: STATFS golden reply", async () => {
  const w = await ready();
  const r = await w.call(request(Op.STATFS, 4, 1));
  assert.deepEqual(
    r.bytes,
    hex(`
      60000000 | 00000000 | 0400000000000000
      0100000000000000 | 0000000000000000 | 0000000000000000 | 0400000000000000 | 0000000000000000
      00100000 | ff000000 | 00100000 | ${"00".repeat(28)}`),
  );
});

Deno.test("protocol: FORGET and BATCH_FORGET get no reply and free an inode at 0", async () => {
  const fs = demo();
  const w = await ready(fs);
  for (let i = 0; i < 3; i++) await w.call(request(Op.LOOKUP, 10 + i, 2, "a.txt"));
  await w.call(request(Op.LOOKUP, 20, 1, "link"));
  assert.equal(w.server.lookupCounts.get(3), 3);
  assert.deepEqual(await w.send(request(Op.FORGET, 30, 3, u64(2))), []);
  assert.equal(w.server.lookupCounts.get(3), 1);
  assert.equal(fs.forgotten.size, 0);
  const batch = request(Op.BATCH_FORGET, 31, 0, u32(2, 0), u64(3, 1), u64(4, 1));
  assert.deepEqual(await w.send(batch), []);
  assert.deepEqual([...fs.forgotten].sort(), [3, 4]);
  assert.equal(w.server.lookupCounts.size, 0);
  // Forgetting what is not known is a no-op, and a count past the request's end is cut.
  assert.deepEqual(await w.send(request(Op.FORGET, 32, 77, u64(1))), []);
  assert.deepEqual(await w.send(request(Op.BATCH_FORGET, 33, 0, u32(1000, 0), u64(3, 1))), []);
  assert.equal(fs.forgotten.has(77), false);
});

Deno.test("protocol: INTERRUPT answers the target EINTR once; unknown target EAGAIN", async () => {
  const fs = demo();
  const ino = fs.addFile("slow", "zzz");
  fs.injectFault(ino, "hang");
  const w = await ready(fs);
  assert.deepEqual(await w.send(request(Op.READ, 50, ino, readIn(0, 0, 4096))), [], "hung");
  assert.equal(w.server.stats.inflight, 1);
  // A request that needs the filesystem is not held up by the hung one.
  assert.equal((await w.call(request(Op.GETATTR, 51, 3, u64(0, 0)))).error, 0);
  const got = await w.send(request(Op.INTERRUPT, 52, 0, u64(50)));
  assert.deepEqual(got.map((r) => [r.unique, r.error]), [[50, Errno.EINTR]]);
  await w.send(new Uint8Array(0), 0); // let the aborted handler finish
  assert.equal(w.server.stats.inflight, 0);
  assert.equal(w.replies.filter((r) => r.unique === 50).length, 1, "answered exactly once");
  const unknown = await w.call(request(Op.INTERRUPT, 53, 0, u64(999)));
  assert.deepEqual([unknown.unique, unknown.error], [53, Errno.EAGAIN]);
});

Deno.test("protocol: write opcodes are EROFS, unimplemented ones ENOSYS, FLUSH and DESTROY ok", async () => {
  let destroyed = false;
  const w = await ready(demo(), { onDestroy: () => (destroyed = true) });
  for (
    const op of [Op.SETATTR, Op.MKDIR, Op.UNLINK, Op.WRITE, Op.CREATE, Op.RENAME2, Op.SETXATTR]
  ) {
    assert.equal((await w.call(request(op, 60 + op, 1))).error, Errno.EROFS, `opcode ${op}`);
  }
  for (const op of [Op.ACCESS, Op.FSYNC, Op.GETLK, Op.IOCTL, Op.LSEEK, Op.STATX]) {
    assert.equal((await w.call(request(op, 160 + op, 1, new Uint8Array(64)))).error, Errno.ENOSYS);
  }
  assert.equal((await w.call(request(Op.FLUSH, 70, 3, new Uint8Array(24)))).error, 0);
  assert.equal((await w.call(request(Op.DESTROY, 71, 0))).error, 0);
  assert.ok(destroyed);
});

Deno.test("protocol: malformed requests get a clean error reply or are dropped, never a throw", async () => {
  const w = await ready();
  const good = request(Op.GETATTR, 80, 3, u64(0, 0));
  // Too short to hold a unique: dropped.
  assert.deepEqual(await w.send(good.slice(0, 12)), []);
  assert.deepEqual(await w.send(new Uint8Array(0)), []);
  // A short header with its unique: EINVAL to that unique.
  const short = await w.send(good.slice(0, 30));
  assert.deepEqual(short.map((r) => [r.unique, r.error, r.len]), [[80, Errno.EINVAL, 16]]);
  // The header's length says more than arrived (a length past the buffer), or less.
  const past = good.slice();
  new DataView(past.buffer).setUint32(0, 4096, true);
  assert.equal((await w.call(past)).error, Errno.EINVAL);
  const under = good.slice();
  new DataView(under.buffer).setUint32(0, 20, true);
  assert.equal((await w.call(under)).error, Errno.EINVAL);
  // Bodies shorter than their struct.
  const read = request(Op.READ, 81, 3, readIn(0, 0, 4096));
  const truncRead = read.slice(0, 50);
  new DataView(truncRead.buffer).setUint32(0, 50, true);
  assert.equal((await w.call(truncRead)).error, Errno.EINVAL);
  assert.equal((await w.call(request(Op.OPEN, 82, 3, u32(0)))).error, Errno.EINVAL);
  // Names: missing NUL, empty, too long, with a slash, not UTF-8.
  const noNul = request(Op.LOOKUP, 83, 2, new TextEncoder().encode("a.txt"));
  assert.equal((await w.call(noNul)).error, Errno.EINVAL);
  assert.equal((await w.call(request(Op.LOOKUP, 84, 2, ""))).error, Errno.EINVAL);
  assert.equal(
    (await w.call(request(Op.LOOKUP, 85, 2, "x".repeat(256)))).error,
    Errno.ENAMETOOLONG,
  );
  assert.equal((await w.call(request(Op.LOOKUP, 86, 1, "Artists/a.txt"))).error, Errno.EINVAL);
  assert.equal(
    (await w.call(request(Op.LOOKUP, 87, 2, new Uint8Array([0xff, 0xfe, 0])))).error,
    Errno.ENOENT,
  );
  assert.equal(
    (await w.call(request(Op.GETXATTR, 88, 3, u32(0, 0), new Uint8Array([0xc3, 0])))).error,
    Errno.ENODATA,
  );
  // Unknown opcodes.
  assert.equal((await w.call(request(7, 89, 1))).error, Errno.ENOSYS);
  assert.equal((await w.call(request(4000000000, 90, 1))).error, Errno.ENOSYS);
  // Malformed requests the kernel does not wait on are dropped silently.
  const forget = request(Op.FORGET, 91, 3, u32(1));
  assert.deepEqual(await w.send(forget), []);
  assert.ok(w.server.stats.malformed >= 12, `malformed ${w.server.stats.malformed}`);
  // And the server still answers.
  assert.equal((await w.call(request(Op.GETATTR, 92, 3, u64(0, 0)))).error, 0);
  assert.equal(w.server.stats.inflight, 0);
});

Deno.test("protocol: a handler that throws answers EIO to that request only", async () => {
  const fs = demo();
  const ino = fs.addFile("bad", "x");
  fs.injectFault(ino, "throw");
  const w = await ready(fs);
  assert.equal((await w.call(request(Op.READ, 1, ino, readIn(0, 0, 10)))).error, Errno.EIO);
  assert.equal(w.server.stats.errors, 1);
  fs.injectFault(ino, "errno-enoent");
  assert.equal((await w.call(request(Op.READ, 2, ino, readIn(0, 0, 10)))).error, Errno.ENOENT);
  assert.equal(w.server.stats.errors, 1, "a deliberate errno is not an error");
});

Deno.test("protocol: attributes sent to the kernel are shared (LOOKUP, READDIRPLUS, GETATTR) and dropped on FORGET", async () => {
  const fs = demo();
  const share = new AttrShare(64);
  const w = await ready(fs, { attrShare: share });
  const out = new Uint8Array(104);
  const lookup = await w.call(request(Op.LOOKUP, 2, 2, "a.txt"));
  assert.ok(share.get(3, out, 0));
  // Exactly the bytes a GETATTR reply carries.
  const getattr = await w.call(request(Op.GETATTR, 3, 3, u64(0, 0)));
  assert.deepEqual(out, getattr.body);
  assert.deepEqual(out.subarray(16), lookup.body.subarray(40));
  const dir = await w.call(request(Op.OPENDIR, 4, 1, u32(0, 0)));
  await w.call(request(Op.READDIRPLUS, 5, 1, readIn(getU64(dir.v, 0), 0, 4096)));
  assert.ok(share.get(4, out, 0), "the symlink, seen through READDIRPLUS");
  await w.send(request(Op.FORGET, 6, 3, u64(2)));
  assert.equal(share.get(3, out, 0), false);
  // A filesystem that does not promise invalidations shares nothing.
  const fs2 = demo();
  Object.defineProperty(fs2, "shareAttrs", { value: () => false });
  const share2 = new AttrShare(64);
  const w2 = await ready(fs2, { attrShare: share2 });
  await w2.call(request(Op.LOOKUP, 2, 2, "a.txt"));
  assert.equal(share2.size, 0);
});

Deno.test("protocol: with cached listings, NO_OPENDIR_SUPPORT: OPENDIR is ENOSYS and READDIRPLUS pages by inode", async () => {
  const fs = new DemoFs({ uid: 1000, gid: 100, nowMs: NOW });
  for (let i = 0; i < 100; i++) {
    fs.addFile(`d/file-${String(i).padStart(3, "0")}-${"x".repeat(40)}`, "y");
  }
  const w = new Wire(fs, { cacheDirs: true });
  const init = await w.call(request(Op.INIT, 1, 0, ...INIT_IN_7_45));
  assert.equal(init.v.getUint32(12, true) & (1 << 24), 1 << 24);
  const d = (await w.call(request(Op.LOOKUP, 2, 1, "d"))).v.getUint32(0, true);
  assert.equal((await w.call(request(Op.OPENDIR, 3, d, u32(0, 0)))).error, Errno.ENOSYS);
  const names: string[] = [];
  let cookie = 0;
  for (let unique = 10;; unique++) {
    const r = await w.call(request(Op.READDIRPLUS, unique, d, readIn(0, cookie, 2048)));
    assert.equal(r.error, 0);
    const recs = parseDirents(r.body, true);
    if (!recs.length) break;
    names.push(...recs.map((x) => x.name));
    cookie = recs.at(-1)!.cookie;
    if (cookie < 102) assert.equal(w.server.openDirs, 1, "the snapshot is kept while paging");
  }
  assert.equal(names.length, 102);
  assert.deepEqual(names.slice(0, 2), [".", ".."]);
  assert.equal(w.server.openDirs, 0, "dropped at the end of the listing");
  // A new listing from 0 sees a change (the kernel lists again after an invalidation).
  fs.addFile("d/new", "z");
  const first = await w.call(request(Op.READDIR, 50, d, readIn(0, 0, 1 << 16)));
  assert.ok(parseDirents(first.body, false).some((x) => x.name === "new"));
  // Without cached listings, OPENDIR stays.
  const w2 = new Wire(demo());
  const init2 = await w2.call(request(Op.INIT, 1, 0, ...INIT_IN_7_45));
  assert.equal(init2.v.getUint32(12, true) & (1 << 24), 0);
  assert.equal((await w2.call(request(Op.OPENDIR, 2, 1, u32(0, 0)))).error, 0);
});

Deno.test("protocol: attributes that change without an invalidation get at most 1 s, whatever the TTL", async () => {
  const fs = demo();
  Object.defineProperty(fs, "shareAttrs", { value: (ino: number) => ino !== 3 });
  const w = await ready(fs, { attrTtlMs: 3_600_000, entryTtlMs: 3_600_000 });
  const volatile = await w.call(request(Op.GETATTR, 2, 3, u64(0, 0)));
  assert.equal(getU64(volatile.v, 0), 1, "1 s for a.txt");
  const stable = await w.call(request(Op.GETATTR, 3, 2, u64(0, 0)));
  assert.equal(getU64(stable.v, 0), 3600, "the session's TTL for the others");
  const lookup = await w.call(request(Op.LOOKUP, 4, 2, "a.txt"));
  assert.equal(getU64(lookup.v, 16), 3600, "entry TTL unchanged");
  assert.equal(getU64(lookup.v, 24), 1, "attribute TTL capped");
});
