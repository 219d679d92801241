// Loaded with `node --import` before the CLI (copied beside the project's src/ by the test): opens
// real onnxruntime sessions until this process holds MOE_TEST_HOLD_MAPS memory mappings, and keeps
// them for the life of the process. vm.max_map_count counts the whole process, so the sweep that
// follows runs as it would beside a deep many-expert model's sessions: near the kernel's limit.
// MOE_TEST_HOLD_MODELS: checkpoint folders (path.delimiter-separated) from the most tensors to the
// fewest; each one's sessions are opened while a whole one fits below the target, then the next's.
import path from 'node:path'
import { register } from 'tsx/esm/api'

register()
const { openCheckpoint } = await import('./src/model/checkpoint.ts')
const { openGraphSession } = await import('./src/engine/graphSession.ts')
const { mapCount } = await import('./src/util/memoryMaps.ts')

const target = Number(process.env.MOE_TEST_HOLD_MAPS)
const held = []
for (const dir of (process.env.MOE_TEST_HOLD_MODELS ?? '').split(path.delimiter).filter(Boolean)) {
  const ckpt = openCheckpoint(dir, { warn: () => {} })
  const open = () => openGraphSession(ckpt, { layers: {}, overrides: {} }, {}, { device: 'cpu', threads: 1 })
  const before = mapCount()
  held.push(await open())
  const step = mapCount() - before
  while (mapCount() + step <= target) held.push(await open())
}
globalThis.moeTestHeldSessions = held // kept alive until the process exits
process.stderr.write(`test: holding ${mapCount()} memory mappings in ${held.length} sessions\n`)
