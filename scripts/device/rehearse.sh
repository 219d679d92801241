#!/usr/bin/env bash
# Rehearses the two `device` calls of README.md "GPU validation" here, as the lent machine sees them:
# the travelling tree (tracked + untracked-not-ignored files) copied into a temp folder, node, npm and
# xz hidden from PATH, call 1 with .device/runtime.tar.xz and .device/gl, then call 2 with
# .device/node.tar.xz, both `bash scripts/device/run.sh ARGS` in a clean environment.
# Usage: bash scripts/device/rehearse.sh                      (CPU: --device=cpu --smoke=1 --threads=2)
#        bash scripts/device/rehearse.sh --webgpu             (WebGPU on Mesa's lavapipe, scripts/device/lavapipe.sh)
#        bash scripts/device/rehearse.sh [--webgpu] ARGS...   (ARGS replace the benchmark's default arguments)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
wrap=()
args=(--device=cpu --smoke=1 --threads=2)
if [ "${1:-}" = --webgpu ]; then
  shift
  bash scripts/device/lavapipe.sh true || exit 1 # fetch it once, outside the clean environment
  wrap=(bash "$ROOT/scripts/device/lavapipe.sh")
  args=(--smoke=1 --threads=2)
fi
[ $# -gt 0 ] && args=("$@")
for part in runtime.tar.xz node.tar.xz; do [ -f ".device/$part" ] || { echo "rehearse.sh: .device/$part is missing: run bash scripts/device/pack.sh" >&2; exit 1; }; done
bash scripts/device/pack.sh --check || exit 1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/tree" && git ls-files -z -co --exclude-standard | tar --null -T - -cf - 2>/dev/null | tar -x -C "$T/tree"
mkdir -p "$T/bin" "$T/tree/.device"
for f in /usr/bin/* /bin/*; do
  b=${f##*/}
  case $b in node|nodejs|npm|npx|corepack|xz|unxz|xzcat) continue ;; esac
  [ -e "$T/bin/$b" ] || ln -s "$f" "$T/bin/$b"
done
call() { # n, files to carry...
  local n=$1; shift
  cp -r "$@" "$T/tree/.device/"
  mkdir -p "$T/out$n"
  echo "===== rehearsal call $n: carry ${*#$ROOT/}"
  (cd "$T/tree" && env -i HOME="$T" PATH="$T/bin:/usr/sbin:/sbin" OUT="$T/out$n" ${wrap[@]+"${wrap[@]}"} bash scripts/device/run.sh "${args[@]}")
  rc=$?
  echo "===== call $n: exit $rc; \$OUT: $(ls "$T/out$n" | tr '\n' ' ')"
  return $rc
}
call 1 .device/runtime.tar.xz .device/gl
rc=$?
if [ $rc = 3 ]; then call 2 .device/node.tar.xz; rc=$?; fi
[ -f "$T/out2/gpu-bench.json" ] || [ -f "$T/out1/gpu-bench.json" ] || { echo "rehearse.sh: no gpu-bench.json came back"; rc=1; }
echo "rehearsal: exit $rc"
exit $rc
