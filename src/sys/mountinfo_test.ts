import assert from "node:assert/strict";
import { mountOf, mountsAt, MountWatch, parseMountinfo, readMountinfo } from "./mountinfo.ts";

const SAMPLE = [
  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
  "40 22 0:35 / /mnt/music rw,relatime shared:20 - nfs4 nas:/export/music rw,vers=4.2",
  "41 40 0:50 / /mnt/music rw,nosuid,nodev - fuse.musicfs musicfs ro,user_id=0,group_id=0",
  "42 22 0:51 / /home/a\\040b\\134c rw - fuse.sshfs host:/x\\040y rw",
  "garbage line",
  "",
].join("\n");

Deno.test("mountinfo: parses fields and decodes octal escapes", () => {
  const m = parseMountinfo(SAMPLE);
  assert.equal(m.length, 4, "the garbage line is skipped");
  assert.deepEqual(m[2], {
    mountpoint: "/mnt/music",
    fstype: "fuse.musicfs",
    source: "musicfs",
    device: "0:50",
  });
  assert.equal(m[3].mountpoint, "/home/a b\\c");
  assert.equal(m[3].source, "host:/x y");
});

Deno.test("mountinfo: mountsAt keeps the stack order; mountOf takes the longest prefix, top first", () => {
  const m = parseMountinfo(SAMPLE);
  assert.deepEqual(mountsAt("/mnt/music", m).map((x) => x.fstype), ["nfs4", "fuse.musicfs"]);
  assert.equal(mountOf(m, "/mnt/music/Artists/x.flac")?.fstype, "fuse.musicfs");
  assert.equal(mountOf(m, "/mnt/musicbox")?.fstype, "ext4", "a name prefix is not a path prefix");
  assert.equal(mountOf(m, "/home/a b\\c/d")?.fstype, "fuse.sshfs");
  assert.equal(mountOf([], "/x"), undefined);
});

Deno.test("mountinfo: this process's mounts include /", () => {
  assert.ok(readMountinfo().some((m) => m.mountpoint === "/"));
});

Deno.test({
  name: "MountWatch sees a mount and an unmount",
  ignore: Deno.uid() !== 0,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "musicfs-mountwatch-" });
    const watch = new MountWatch();
    try {
      assert.ok(watch.watching);
      // Other processes may mount meanwhile: only "seen after each change" can be asserted.
      const mount = await new Deno.Command("mount", { args: ["-t", "tmpfs", "tmpfs", dir] })
        .output();
      assert.ok(mount.success);
      assert.equal(watch.changed(), true, "the mount");
      await new Deno.Command("umount", { args: [dir] }).output();
      assert.equal(watch.changed(), true, "the unmount");
    } finally {
      watch.close();
      await new Deno.Command("umount", { args: ["-l", dir], stderr: "null" }).output();
      await Deno.remove(dir);
    }
  },
});
