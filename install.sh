#!/usr/bin/env bash
# Sets musicfs up on this machine; safe to run again. Needs only the npm registry and, for the
# system packages, Debian's archive. As root it installs to /usr/local/bin, else ~/.local/bin.
set -euo pipefail
cd "$(dirname "$0")"
repo=$PWD
say() { printf 'install.sh: %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then bindir=/usr/local/bin; else bindir="$HOME/.local/bin"; fi
mkdir -p "$bindir"

# System packages: fusermount3 (non-root mounts) and ffmpeg (test fixtures, audio checks).
need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    say "missing ${need[*]} (install them with your package manager; needed for non-root mounts and tests)"
  fi
fi

# npm packages, Deno included, exactly as package-lock.json pins them.
if ! command -v npm >/dev/null 2>&1; then
  say "npm is required (install Node.js 20+ first)"; exit 1
fi
stamp=node_modules/.musicfs-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm packages"
  # `npm ci` refuses this lock: the registry here lacks the other platforms' optional Deno
  # binaries, so npm leaves them out of the lock. `npm install` with the lock honours its pins.
  npm install --no-audit --no-fund --no-save --loglevel=error
  cp package-lock.json "$stamp"
fi

# The real deno binary (not the node wrapper in node_modules/.bin).
deno_bin=""
for c in node_modules/@deno/*/deno node_modules/deno/deno; do
  if [ -x "$c" ] && [ ! -d "$c" ]; then deno_bin="$repo/$c"; break; fi
done
[ -n "$deno_bin" ] || { say "the deno package did not install a binary"; exit 1; }
ln -sf "$deno_bin" "$bindir/deno"
# `deno task` prefers node_modules/.bin over PATH and would run this binary as a JS script.
rm -f node_modules/.bin/deno

# The single-file build (deno task dist: deno, the app and its packages in one executable);
# where it cannot be built (not linux-x64), a launcher running main.ts with the installed Deno.
mkdir -p dist
version=$(sed -n 's/^export const VERSION = "\(.*\)";$/\1/p' src/cli/mod.ts)
distfile="dist/musicfs-$version-linux-x64"
if [ "$(uname -m)" = x86_64 ] && "$deno_bin" task dist >/dev/null 2>&1 && [ -x "$distfile" ]; then
  install -m 0755 "$distfile" "$bindir/musicfs.tmp.$$" && mv -f "$bindir/musicfs.tmp.$$" "$bindir/musicfs"
  say "installed $bindir/musicfs ($distfile: one file, no Deno needed to run it)"
else
  cat >"$bindir/musicfs.tmp.$$" <<LAUNCH
#!/bin/sh
# musicfs launcher written by install.sh (the single-file build was not possible here).
exec "$deno_bin" run -A --quiet "$repo/main.ts" "\$@"
LAUNCH
  chmod +x "$bindir/musicfs.tmp.$$" && mv -f "$bindir/musicfs.tmp.$$" "$bindir/musicfs"
  say "could not build the single file; installed a launcher $bindir/musicfs running main.ts"
fi
case ":$PATH:" in *":$bindir:"*) ;; *) say "add $bindir to your PATH" ;; esac
say "done: $("$bindir/musicfs" --version 2>/dev/null || echo 'musicfs installed')"
