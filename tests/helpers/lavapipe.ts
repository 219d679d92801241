// The environment that points onnxruntime's WebGPU provider (Dawn over Vulkan) at Mesa's software
// Vulkan driver, lavapipe, when scripts/device/lavapipe.sh has unpacked it (.ci/run does): a real
// WebGPU execution provider on a machine without a GPU. undefined when it is not there.
import fs from 'node:fs'
import path from 'node:path'
import { ROOT } from './cli.ts'

export function lavapipeEnv(): Record<string, string> | undefined {
  const dir = path.join(ROOT, '.device', 'lavapipe')
  const icd = path.join(dir, 'lvp.json')
  if (!fs.existsSync(icd)) return undefined
  const lib = path.join(dir, 'root', 'usr', 'lib', 'x86_64-linux-gnu')
  return { VK_DRIVER_FILES: icd, VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: [lib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') }
}
