#!/usr/bin/env bash
# Sets musicfs up on this machine; safe to run again. Needs only the npm registry and, for the
# system packages, Debian's archive. As root it installs to /usr/local/bin, else ~/.local/bin;
# a `musicfs` or `deno` there that belongs to another clone or install is left alone (this
# clone's go to <clone>/.bin instead) unless --system is given.
set -euo pipefail
cd "$(dirname "$0")"
repo=$PWD
say() { printf 'install.sh: %s\n' "$*"; }

system=0
for arg in "$@"; do
  case "$arg" in
    --system) system=1 ;;
    -h | --help)
      echo "usage: ./install.sh [--system]"
      echo "  --system  point the machine-wide (root) or per-user musicfs and deno at this clone,"
      echo "            even when they belong to another clone or install"
      exit 0
      ;;
    *) say "unknown option $arg (usage: ./install.sh [--system])"; exit 2 ;;
  esac
done

if [ -n "${MUSICFS_BINDIR:-}" ]; then bindir=$MUSICFS_BINDIR
elif [ "$(id -u)" -eq 0 ]; then bindir=/usr/local/bin; else bindir="$HOME/.local/bin"; fi
mkdir -p "$bindir"
localbin="$repo/.bin"
repo_real=$(pwd -P)

# Whether $1 (a deno or musicfs in a bin dir) is missing or already this clone's: a link into
# the clone, or the launcher this script writes for it.
ours() {
  [ -e "$1" ] || [ -L "$1" ] || return 0
  if [ -L "$1" ]; then
    # The link as written: this clone's node_modules may itself be a link to a shared one.
    case "$(readlink "$1")" in "$repo"/* | "$repo_real"/*) return 0 ;; esac
    return 1
  fi
  grep -qF -e "\"$repo/main.ts\"" -e "\"$repo_real/main.ts\"" "$1" 2>/dev/null
}

# Where this clone's $1 goes: the bin dir, unless another one is there (then <clone>/.bin).
dest() {
  if [ "$system" = 1 ] || ours "$bindir/$1"; then
    printf '%s\n' "$bindir"
  else
    mkdir -p "$localbin"
    say "kept $bindir/$1 (it belongs to $(describe "$bindir/$1")); this clone's is $localbin/$1 (--system replaces it)" >&2
    printf '%s\n' "$localbin"
  fi
}

describe() {
  if [ -L "$1" ]; then readlink "$1"; else sed -n 's/^exec "[^"]*" run -A --quiet "\(.*\)\/main.ts".*/\1/p' "$1" | grep . || echo "another install"; fi
}

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
deno_dir=$(dest deno)
ln -sfn "$deno_bin" "$deno_dir/deno"
say "deno: $deno_dir/deno -> $deno_bin"
# `deno task` prefers node_modules/.bin over PATH and would run this binary as a JS script.
rm -f node_modules/.bin/deno

# The single-file build (deno task dist: deno, the app and its packages in one executable);
# where it cannot be built (not linux-x64), a launcher running main.ts with the installed Deno.
mkdir -p dist
mdir=$(dest musicfs)
version=$(sed -n 's/^export const VERSION = "\(.*\)";$/\1/p' src/cli/mod.ts)
distfile="dist/musicfs-$version-linux-x64"
# A link left by an earlier install would make the writes below go through it.
rm -f "$mdir/musicfs.tmp.$$"
if [ "$(uname -m)" = x86_64 ] && "$deno_bin" task dist >/dev/null 2>&1 && [ -x "$distfile" ]; then
  # A link into this clone (not a copy), so a later install from another clone can tell whose it is.
  ln -sfn "$repo/$distfile" "$mdir/musicfs.tmp.$$" && mv -Tf "$mdir/musicfs.tmp.$$" "$mdir/musicfs"
  say "installed $mdir/musicfs -> $distfile (one file, no Deno needed to run it)"
else
  cat >"$mdir/musicfs.tmp.$$" <<LAUNCH
#!/bin/sh
# musicfs launcher written by install.sh (the single-file build was not possible here).
exec "$deno_bin" run -A --quiet "$repo/main.ts" "\$@"
LAUNCH
  chmod +x "$mdir/musicfs.tmp.$$" && mv -Tf "$mdir/musicfs.tmp.$$" "$mdir/musicfs"
  say "could not build the single file; installed a launcher $mdir/musicfs running main.ts"
fi
for d in $(printf '%s\n' "$deno_dir" "$mdir" | sort -u); do
  case ":$PATH:" in *":$d:"*) ;; *) say "add $d to your PATH" ;; esac
done
say "done: $("$mdir/musicfs" --version 2>/dev/null || echo 'musicfs installed')"
