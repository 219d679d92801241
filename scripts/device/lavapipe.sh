#!/usr/bin/env bash
# Runs a command with onnxruntime's WebGPU provider on the CPU: Dawn over Mesa's software Vulkan driver
# (lavapipe), unpacked into .device/lavapipe/ (ignored; never carried), nothing installed into /.
# A rehearsal of the GPU path without a GPU: which nodes the WebGPU provider takes, float16 numbers as a
# GPU rounds them, what fails and how. Its speed means nothing. Debian 12 (bookworm): lavapipe 22.3 is too
# old for Dawn ("Vulkan shaderUniform*ArrayDynamicIndexing required"), so Mesa comes from bookworm-backports
# (25.0 worked, with the system's libLLVM-15 and X/Wayland client libraries).
# Usage: bash scripts/device/lavapipe.sh node --import tsx bench/gpu.bench.ts --smoke=1 --threads=2
set -euo pipefail
DIR=$(cd "$(dirname "$0")/../.." && pwd)/.device/lavapipe # the command runs in the caller's folder
if [ ! -f "$DIR/lvp.json" ]; then
  mkdir -p "$DIR/lists/partial" "$DIR/debs"
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$DIR/sources.list"
  echo "deb http://deb.debian.org/debian bookworm main" >> "$DIR/sources.list"
  o="-oAPT::Architecture=amd64 -oDir::State::Lists=$DIR/lists -oDir::Etc::SourceList=$DIR/sources.list -oDir::Etc::SourceParts=/dev/null"
  apt-get $o update >/dev/null
  mesa=$(apt-cache $o madison mesa-vulkan-drivers | awk -F'|' '/backports/ {gsub(/ /, "", $2); print $2; exit}')
  [ -n "$mesa" ] || { echo "lavapipe.sh: no mesa-vulkan-drivers in bookworm-backports" >&2; exit 1; }
  (cd "$DIR/debs" && apt-get $o download "mesa-vulkan-drivers=$mesa" libvulkan1 2>&1 | grep -v unsandboxed || true)
  for f in "$DIR"/debs/*.deb; do dpkg -x "$f" "$DIR/root"; done
  lib=$DIR/root/usr/lib/x86_64-linux-gnu
  missing=$(ldd "$lib/libvulkan_lvp.so" | grep 'not found' || true)
  [ -z "$missing" ] || { echo "lavapipe.sh: libvulkan_lvp.so needs libraries this machine lacks (apt-get install them):" >&2; echo "$missing" >&2; exit 1; }
  printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' "$lib/libvulkan_lvp.so" > "$DIR/lvp.json"
  echo "lavapipe: mesa $mesa in $DIR"
fi
export LD_LIBRARY_PATH=$DIR/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VK_DRIVER_FILES=$DIR/lvp.json VK_ICD_FILENAMES=$DIR/lvp.json
exec "$@"
