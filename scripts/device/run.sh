#!/usr/bin/env bash
# What the `device` tool's command runs on a lent GPU machine (README.md "GPU validation"): unpacks the
# parts scripts/device/pack.sh made that this call carried, installs the carried Vulkan loader when the
# machine has none, prints the machine (GPU, Vulkan, node), then runs `bench/gpu.bench.ts` (issue 10 §6)
# with the arguments given, writing into $OUT: run.log (all of this output), gpu-bench.json (the
# benchmark's JSON) and children.log (every measuring child's stderr: Dawn's and onnxruntime's messages).
# A part unpacked by an earlier call stays on a warm machine (ignored folders of the repo are kept), so
# the same command serves both calls: it runs the checks as soon as node and node_modules are both there.
# Locally: OUT=$(mktemp -d) bash scripts/device/run.sh --device=cpu --smoke=1
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
main() {
echo "== device run $(date -u +%FT%TZ) in $PWD"

unpack() { # tarball, target folder, stamp
  local stamp="$3" id
  id=$(stat -c '%s %Y' "$1")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$id" ]; then echo "$1: already unpacked"; return 0; fi
  local t0=$SECONDS
  mkdir -p "$2" || return 1
  if command -v xz >/dev/null; then tar -C "$2" -xJf "$1" || return 1
  else # no xz-utils there: Python's lzma reads the same archive
    python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1]); t.extractall(sys.argv[2], filter="tar") if hasattr(tarfile, "tar_filter") else t.extractall(sys.argv[2])' "$1" "$2" || return 1
  fi
  echo "$id" > "$stamp" && echo "$1: unpacked into $2 in $((SECONDS - t0)) s"
}
if [ -f .device/runtime.tar.xz ]; then
  if [ -d node_modules ] && [ ! -f .device/runtime.stamp ]; then
    echo ".device/runtime.tar.xz: node_modules exists and was not unpacked by this script; using it as it is"
  else
    unpack .device/runtime.tar.xz . .device/runtime.stamp || { echo "run.sh: could not unpack .device/runtime.tar.xz"; exit 1; }
  fi
fi
if [ -f .device/node.tar.xz ]; then unpack .device/node.tar.xz .device .device/node.stamp || { echo "run.sh: could not unpack .device/node.tar.xz"; exit 1; }; fi

echo "== machine"
uname -srm; ldd --version 2>/dev/null | head -1
gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L; then gpu=1; else echo "nvidia-smi: no NVIDIA GPU here"; fi
echo "== vulkan"
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  debs=(.device/gl/*.deb)
  if [ -e "${debs[0]}" ] && { [ $gpu = 1 ] || [ "${DEVICE_INSTALL_GL:-0}" = 1 ]; }; then
    # The device README's recipe; only on the lent machine (it writes into /).
    for f in "${debs[@]}"; do dpkg -x "$f" /; done; ldconfig
    echo "installed the carried loader: ${debs[*]##*/}"
  else
    echo "no libvulkan.so.1 here, and no carried .device/gl/*.deb installed (only where nvidia-smi finds a GPU, or DEVICE_INSTALL_GL=1)"
  fi
fi
ldconfig -p | grep -i vulkan || echo "(ldconfig lists no vulkan library)"
icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/nvidia/share/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
echo "vulkan ICD files: ${icds:-none}"
nv_icd=$(ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json /usr/local/nvidia/share/vulkan/icd.d/nvidia*.json 2>/dev/null | head -1)
if [ -n "$nv_icd" ] && [ $gpu = 1 ]; then
  # The NVIDIA ICD alone: the driver's own file may lie outside the loader's search path (device README),
  # and a software driver (lavapipe) listed beside it must not be the adapter Dawn measures.
  export VK_DRIVER_FILES=$nv_icd VK_ICD_FILENAMES=$nv_icd
  [ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  echo "VK_DRIVER_FILES=$nv_icd:"; cat "$nv_icd"; echo
  # The library it names must be found by dlopen.
  lib=$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$nv_icd")
  if [ -n "$lib" ] && [ "${lib#/}" = "$lib" ] && ! ldconfig -p | grep -qF "$lib"; then
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
      [ -e "$d/$lib" ] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} && echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH (for $lib)" && break
    done
  fi
elif [ $gpu = 1 ]; then
  echo "(no NVIDIA Vulkan ICD file found: Dawn will find no NVIDIA adapter)"
fi

echo "== node"
NODE=
if [ -x .device/node/bin/node ]; then NODE=$PWD/.device/node/bin/node
elif command -v node >/dev/null && node --version | grep -q '^v20\.'; then NODE=$(command -v node)
fi
if [ -z "$NODE" ]; then
  echo "system node: $(command -v node >/dev/null && node --version || echo none)"
  echo "NEXT: no Node 20 here. Make call 2 now (within 30 s, while this machine is warm): the same command with carry [\".device/node.tar.xz\"]."
  exit 3
fi
export PATH="$(dirname "$NODE"):$PATH"
echo "node: $NODE $("$NODE" --version)"
if [ ! -f node_modules/tsx/package.json ] || [ ! -f node_modules/onnxruntime-node/package.json ]; then
  echo "NEXT: no node_modules here (the machine was given back since call 1, or call 1 did not carry it). Make the call with carry [\".device/runtime.tar.xz\", \".device/gl\"]."
  exit 4
fi
ldd node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 | grep 'not found' && echo "(libonnxruntime.so.1 misses the libraries above)"

echo "== checks: bench/gpu.bench.ts $*"
export MOE_HARNESS_HOME=${MOE_HARNESS_HOME:-$(mktemp -d)}
"$NODE" --import tsx bench/gpu.bench.ts --json-out="$OUT/gpu-bench.json" --log="$OUT/children.log" "$@"
rc=$?
echo "== done: exit $rc, files in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
}
# Through a pipe rather than exec > >(tee): the log is complete when the command returns.
main "$@" 2>&1 | tee -a "$OUT/run.log"
exit "${PIPESTATUS[0]}"
