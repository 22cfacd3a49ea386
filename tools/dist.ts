/**
 * `deno task dist`: builds `dist/musicfs-<version>-linux-x64` (plus a `.sha256`), one executable
 * file that runs on a Linux machine with no Deno, Node or npm installed.
 *
 * Hand-written because `deno compile` needs the denort runtime from dl.deno.land, which these
 * machines cannot reach. The file is a POSIX sh header (see {@link header}) followed by a gzip'd
 * tar of the parts already here: the deno binary from the npm package, the app's sources and its
 * npm packages (lmdb's native addon included). On its first run the header checks the payload's
 * size and SHA-256, unpacks it into a private temp dir under the user's cache, and publishes it
 * with one atomic `ln -s` (two first runs at once: one link wins, the other run discards its
 * copy and uses the winner's). Later runs only check the file size and exec.
 *
 * gzip rather than xz or zstd: every Linux machine has it, and it packs the 90 MB deno binary
 * in seconds.
 *
 * @module
 */
import { VERSION } from "../src/cli/mod.ts";

/** Where the header ends and the payload begins; the header is padded to this many bytes. */
export const HEADER_BYTES = 16384;

/** Options of {@link buildDist}. */
export interface DistOptions {
  /** The checkout to pack. Default: the one this module is in. */
  repo?: string;
  /** Output dir. Default `<repo>/dist`. */
  outDir?: string;
  /** gzip level 1..9. Default 6. */
  level?: number;
}

/** What {@link buildDist} made. */
export interface DistResult {
  /** The executable. */
  path: string;
  /** Its `.sha256` file (`<hex>  <name>`, as sha256sum prints it). */
  sha256Path: string;
  /** SHA-256 of the whole file. */
  sha256: string;
  /** SHA-256 of the payload alone (checked by the header at first run). */
  payloadSha256: string;
  bytes: number;
  version: string;
}

/** A failed build, with the step that failed. */
export class DistError extends Error {
  /** `step` names what was being done, e.g. `pack the payload`. */
  constructor(readonly step: string, message: string, options?: ErrorOptions) {
    super(`Cannot build the dist file: ${step}: ${message}`, options);
    this.name = "DistError";
  }
}

/** Packages only the tests or the developer set-up need: left out of the file. */
const DEV_PACKAGES = ["deno", "@deno", "@types", "undici-types", ".bin", ".package-lock.json"];

/** Builds the file; see the module doc. */
export async function buildDist(opts: DistOptions = {}): Promise<DistResult> {
  const repo = (opts.repo ?? new URL("..", import.meta.url).pathname).replace(/\/+$/, "");
  const outDir = opts.outDir ?? `${repo}/dist`;
  const denoBin = await findDenoBinary(repo);
  const name = `musicfs-${VERSION}-linux-x64`;
  await Deno.mkdir(outDir, { recursive: true });
  const stage = await Deno.makeTempDir({ dir: outDir, prefix: ".stage-" });
  try {
    // Symlinks into the checkout, dereferenced by tar -h: nothing is copied twice.
    await Deno.mkdir(`${stage}/app`);
    await Deno.symlink(denoBin, `${stage}/deno`);
    for (const f of ["main.ts", "deno.json", "src"]) {
      await Deno.symlink(`${repo}/${f}`, `${stage}/app/${f}`);
    }
    // package.json without devDependencies: the deno package is not in the payload.
    const pkg = JSON.parse(await Deno.readTextFile(`${repo}/package.json`));
    delete pkg.devDependencies;
    await Deno.writeTextFile(`${stage}/app/package.json`, JSON.stringify(pkg, null, 2) + "\n");
    await Deno.mkdir(`${stage}/app/node_modules`);
    for await (const e of Deno.readDir(`${repo}/node_modules`)) {
      if (DEV_PACKAGES.includes(e.name) || e.name.startsWith(".")) continue;
      await Deno.symlink(`${repo}/node_modules/${e.name}`, `${stage}/app/node_modules/${e.name}`);
    }
    const payload = `${stage}/payload.tgz`;
    const level = Math.min(9, Math.max(1, opts.level ?? 6));
    await sh(
      "pack the payload",
      `tar -C "$1" -c -h --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 ` +
        `--exclude='*_test.ts' --exclude='testdata' deno app | gzip -n -${level} > "$2"`,
      stage,
      payload,
    );
    const payloadSha256 = await sha256File(payload);
    const payloadBytes = (await Deno.stat(payload)).size;
    const head = header({ version: VERSION, sha256: payloadSha256, bytes: payloadBytes });
    const out = `${outDir}/${name}`;
    const tmp = `${out}.tmp-${Deno.pid}`;
    await Deno.writeFile(tmp, head, { mode: 0o755 });
    await sh("append the payload", `cat "$1" >> "$2"`, payload, tmp);
    await Deno.chmod(tmp, 0o755);
    await Deno.rename(tmp, out);
    const sha256 = await sha256File(out);
    const sha256Path = `${out}.sha256`;
    await Deno.writeTextFile(sha256Path, `${sha256}  ${name}\n`);
    return {
      path: out,
      sha256Path,
      sha256,
      payloadSha256,
      bytes: (await Deno.stat(out)).size,
      version: VERSION,
    };
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
}

/** The real deno binary of the npm package (not the node wrapper in node_modules/.bin). */
async function findDenoBinary(repo: string): Promise<string> {
  const candidates = [`${repo}/node_modules/deno/deno`];
  try {
    for await (const e of Deno.readDir(`${repo}/node_modules/@deno`)) {
      if (e.name.startsWith("linux-x64")) {
        candidates.unshift(`${repo}/node_modules/@deno/${e.name}/deno`);
      }
    }
  } catch { /* no @deno scope: try the main package */ }
  for (const c of candidates) {
    try {
      const info = await Deno.stat(c);
      if (info.isFile && (info.mode ?? 0) & 0o111) return await Deno.realPath(c);
    } catch { /* next */ }
  }
  throw new DistError(
    "find the deno binary",
    `none of ${candidates.join(", ")} is an executable file (run ./install.sh first)`,
  );
}

async function sh(step: string, script: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("bash", {
    args: ["-c", `set -eo pipefail; ${script}`, "sh", ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
    throw new DistError(step, why || `exit code ${out.code}`);
  }
}

async function sha256File(path: string): Promise<string> {
  const out = await new Deno.Command("sha256sum", { args: [path], stdout: "piped" }).output();
  if (!out.success) throw new DistError("hash", `sha256sum ${path} failed`);
  return new TextDecoder().decode(out.stdout).split(" ")[0];
}

/**
 * The sh header, padded to {@link HEADER_BYTES}. Every failure is one line on stderr and exit
 * code 1. Runs with any POSIX sh plus coreutils (wc, tail, sha256sum, mktemp), gzip and tar.
 */
export function header(p: { version: string; sha256: string; bytes: number }): Uint8Array {
  const script = `#!/bin/sh
# musicfs ${p.version} for Linux x86-64: this sh header, then a gzip'd tar of the deno runtime,
# the app and its npm packages. The first run unpacks it (verified by SHA-256) into
# \${XDG_CACHE_HOME:-~/.cache}/musicfs-dist/<version>-<hash>; later runs exec it directly.
# Built by \`deno task dist\` (tools/dist.ts).
v='${p.version}'
h='${p.sha256}'
n=${p.bytes}
off=${HEADER_BYTES}
die() { printf 'musicfs: %s\\n' "$*" >&2; exit 1; }
me=$0
case $me in */*) ;; *) me=$(command -v -- "$me") || die "cannot find my own file ($0)" ;; esac
[ -r "$me" ] || die "cannot read my own file $me"
case $(uname -s)-$(uname -m) in
Linux-x86_64) ;;
*) die "this file runs on Linux x86-64 only, not $(uname -s) $(uname -m)" ;;
esac
size=$(wc -c <"$me") || die "cannot read $me"
[ "$size" -eq $((off + n)) ] ||
  die "$me is damaged or incomplete ($size of $((off + n)) bytes; download it again)"
if [ -n "\${XDG_CACHE_HOME:-}" ]; then base=$XDG_CACHE_HOME/musicfs-dist
elif [ -n "\${HOME:-}" ]; then base=$HOME/.cache/musicfs-dist
else die "neither HOME nor XDG_CACHE_HOME is set (set one: the first run unpacks there)"
fi
dir=$base/$v-$(printf '%.16s' "$h")
if [ ! -x "$dir/deno" ] || [ ! -f "$dir/app/main.ts" ]; then
  for t in sha256sum gzip tar mktemp tail; do
    command -v $t >/dev/null 2>&1 || die "the first run needs $t, which is not installed"
  done
  (umask 077 && mkdir -p "$base") || die "cannot create $base (check its permissions)"
  tmp=$(mktemp -d "$base/.unpack-$v.XXXXXX") || die "cannot create a temp dir in $base"
  got=$(tail -c +$((off + 1)) "$me" | sha256sum) || { rm -rf "$tmp"; die "cannot read $me"; }
  if [ "\${got%% *}" != "$h" ]; then
    rm -rf "$tmp"
    die "$me is damaged (its SHA-256 does not match; download it again)"
  fi
  if ! tail -c +$((off + 1)) "$me" | gzip -dc | tar -xf - -C "$tmp" 2>/dev/null ||
    [ ! -x "$tmp/deno" ]; then
    rm -rf "$tmp"
    die "cannot unpack into $base (is the disk full?)"
  fi
  # Publishing is one atomic symlink: of two first runs at once, one link wins and the other
  # run uses the winner's copy (-n: never a link inside the winner's dir). A link left
  # dangling (its target deleted) is replaced.
  if ! ln -sn "\${tmp##*/}" "$dir" 2>/dev/null; then
    if [ -x "$dir/deno" ]; then
      rm -rf "$tmp"
    else
      rm -f "$dir"
      ln -sn "\${tmp##*/}" "$dir" 2>/dev/null || rm -rf "$tmp"
      [ -x "$dir/deno" ] || die "cannot unpack into $dir (remove it and run again)"
    fi
  fi
fi
DENO_DIR=$dir/.deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1
export DENO_DIR DENO_NO_UPDATE_CHECK DENO_NO_PROMPT
exec "$dir/deno" run -A --quiet --no-remote --config "$dir/app/deno.json" "$dir/app/main.ts" "$@"
exit 126
`;
  const bytes = new TextEncoder().encode(script);
  // The payload offset is fixed, so the header carries no self-reference to compute.
  const padding = HEADER_BYTES - bytes.length - 2;
  if (padding < 0) throw new DistError("write the header", "header longer than its slot");
  const out = new Uint8Array(HEADER_BYTES);
  out.set(bytes);
  out.set(new TextEncoder().encode("#" + " ".repeat(padding) + "\n"), bytes.length);
  return out;
}

if (import.meta.main) {
  try {
    const r = await buildDist();
    console.log(`${r.path} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, sha256 ${r.sha256})`);
  } catch (e) {
    console.error(`dist: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
