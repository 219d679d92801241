#!/usr/bin/env bash
# Builds what a GPU machine lent through the `device` tool needs beside the repo's working tree, in
# .device/ (ignored): the machine has no network and very probably no Node.js or node_modules.
#   .device/runtime.tar.xz  node_modules of the production dependencies, Linux x64 only: onnxruntime-node's
#                           linux/x64 binaries (its WebGPU provider is built in), better-sqlite3's built
#                           addon + JS, esbuild's linux-x64 binary (tsx); no devDependencies, docs, maps or types
#   .device/node.tar.xz     this machine's node (v20: better-sqlite3's addon is built for its ABI)
#   .device/gl/*.deb        the Vulkan loader and glvnd (the device README's recipe), installed there only
#                           when `ldconfig -p` lists no libvulkan.so.1
# One call carries at most 64 MiB with the working tree (tracked + untracked-not-ignored files), so the
# parts travel in two calls (README.md "GPU validation"); this script checks each call's total and
# fails when one would not fit. Usage: bash scripts/device/pack.sh   (from anywhere; ~4 min on 2 cores)
#        bash scripts/device/pack.sh --check   only the size check, on the parts already built (seconds)
# Options (environment): DEVICE_PACK_GL=0 skips the .debs; DEVICE_PACK_XZ="-6" changes xz's level.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUTDIR=.device
LIMIT=$((64 * 1024 * 1024))
MARGIN=$((1024 * 1024)) # files other sessions or helpers add to the tree between packing and the call
XZ_OPTS=${DEVICE_PACK_XZ:--9}
mkdir -p "$OUTDIR"
git check-ignore -q "$OUTDIR/x" || { echo "pack.sh: $OUTDIR/ is not ignored by git (add /.device/ to .gitignore), or it would travel in every call" >&2; exit 1; }

node_version=$(node --version)
case "$node_version" in v20.*) ;; *) echo "pack.sh: node is $node_version; the device part must be Node 20 (better-sqlite3's addon is built for its ABI)" >&2; exit 1 ;; esac
[ "$(uname -m)" = x86_64 ] || { echo "pack.sh: this machine is $(uname -m); the device is x86-64, so its node and addons must be built on x86-64" >&2; exit 1; }

CHECK_ONLY=0
[ "${1:-}" = --check ] && CHECK_ONLY=1
if [ $CHECK_ONLY = 1 ]; then
  for part in runtime.tar.xz node.tar.xz; do [ -f "$OUTDIR/$part" ] || { echo "pack.sh: $OUTDIR/$part is missing: run bash scripts/device/pack.sh" >&2; exit 1; }; done
fi
stage=$(mktemp -d)
list=$(mktemp)
trap 'rm -f "$list"; rm -rf "$stage"' EXIT
if [ $CHECK_ONLY = 0 ]; then
# ---- runtime: the production dependency tree, pruned to what Linux x64 loads at run time
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | sed "s|^$ROOT/||" | sort -u | while read -r pkg; do
  [ -d "$pkg" ] || continue
  # Nested node_modules are packages of their own in the list; everything here that runs on Linux x64.
  find "$pkg" -path "$pkg/node_modules" -prune -o \( -type f -o -type l \) -print
done | grep -Ev '\.(md|markdown|map|d\.ts|d\.mts|d\.cts|tsbuildinfo)$' \
  | grep -Ev '^node_modules/onnxruntime-node/bin/napi-v6/(darwin|win32|linux/arm64)/' \
  | grep -Ev '^node_modules/better-sqlite3/(deps|src|docs|benchmark|test)/' \
  | grep -Ev '^node_modules/better-sqlite3/build/' \
  | grep -Ev '^node_modules/esbuild/bin/esbuild$' \
  > "$list"
# better-sqlite3 loads build/Release/better_sqlite3.node (through `bindings`), nothing else of its build.
echo node_modules/better-sqlite3/build/Release/better_sqlite3.node >> "$list"
for need in node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node \
  node_modules/@esbuild/linux-x64/bin/esbuild node_modules/tsx/package.json; do
  grep -qxF "$need" "$list" || { echo "pack.sh: $need is missing from the production dependencies (npm ci?)" >&2; exit 1; }
done
echo "runtime: $(wc -l < "$list") files, $(tr '\n' '\0' < "$list" | xargs -0 stat -c %s | awk '{s+=$1} END {printf "%.1f MiB", s / 1048576}') before compression"
tar -cf - -T "$list" | xz -T0 $XZ_OPTS > "$OUTDIR/runtime.tar.xz.tmp"
mv "$OUTDIR/runtime.tar.xz.tmp" "$OUTDIR/runtime.tar.xz"

# ---- node: the binary alone (it is self-contained: libc, libstdc++ and libm only)
mkdir -p "$stage/node/bin"
cp "$(readlink -f "$(command -v node)")" "$stage/node/bin/node"
echo "$node_version" > "$stage/node/VERSION"
tar -C "$stage" -cf - node | xz -T0 $XZ_OPTS --x86 --lzma2=preset=9 > "$OUTDIR/node.tar.xz.tmp" 2>/dev/null \
  || tar -C "$stage" -cf - node | xz -T0 $XZ_OPTS > "$OUTDIR/node.tar.xz.tmp"
mv "$OUTDIR/node.tar.xz.tmp" "$OUTDIR/node.tar.xz"

# ---- Vulkan loader debs (.device/README recipe; amd64 whatever this machine is)
if [ "${DEVICE_PACK_GL:-1}" != 0 ]; then
  mkdir -p "$OUTDIR/gl" "$stage/apt/partial"
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$stage/apt"
  if apt-get $o update >/dev/null 2>&1 && (cd "$OUTDIR/gl" && rm -f ./*.deb && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1); then
    echo "gl: $(ls "$OUTDIR/gl" | tr '\n' ' ')"
  else
    echo "pack.sh: warning: apt-get could not download the Vulkan loader debs; .device/gl is left as it was (the device may have libvulkan.so.1 already)" >&2
  fi
fi

fi # CHECK_ONLY

# ---- what each call carries, against the 64 MiB limit
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
[ -d shared ] && tree=$((tree + $(du -sb shared | cut -f1)))
size() { du -cb "$@" 2>/dev/null | tail -1 | cut -f1; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
call1=$((tree + $(size "$OUTDIR/runtime.tar.xz" "$OUTDIR/gl")))
call2=$((tree + $(size "$OUTDIR/node.tar.xz")))
echo "sizes: working tree $(mib $tree); runtime.tar.xz $(mib $(size "$OUTDIR/runtime.tar.xz")); gl $(mib $(size "$OUTDIR/gl")); node.tar.xz $(mib $(size "$OUTDIR/node.tar.xz"))"
echo "call 1 (carry .device/runtime.tar.xz .device/gl): $(mib $call1) of 64 MiB"
echo "call 2 (carry .device/node.tar.xz):                $(mib $call2) of 64 MiB"
ok=1
for c in $call1 $call2; do [ $((c + MARGIN)) -le $LIMIT ] || ok=0; done
[ $ok = 1 ] || { echo "pack.sh: a call would exceed 64 MiB (with a 1 MiB margin): untracked files in the tree count too (git status)" >&2; exit 1; }
echo "ok: both calls fit"
