// A method thread ended on purpose (release: a run closed between two layers) while it is already ending
// itself after a plugin's stray error: on Node 20 its 'exit' can then never come, so terminate() never
// settles, and a process with nothing else to wait for quits with code 13 and no output. The window is
// made wide on purpose: the plugin holds a large heap (its thread takes tens of ms to tear down) and the
// main thread is busy (as while it calibrates the next layer) until the stray error has been sent, then
// closes the run while the thread is still ending. Before the fix 4 runs in 4 exited 13 here.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { copyProject } from '../helpers/projectCopy.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const project = path.join(dir, 'project')
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 17 }).dir

describe('closing a layer-by-layer run whose thread is ending itself', () => {
  before(() => {
    copyProject(project, ['src', 'methods', 'tasks', 'package.json'])
    fs.writeFileSync(path.join(project, 'methods', 'heavy-stray.ts'), [
      "import { defineMethod, p } from '../src/index.ts'",
      "export default defineMethod({ name: 'heavy-stray', description: 'test plugin', family: 'expert-pruning', params: { ratio: p.ratio() },",
      '  applyLayer(ctx, layer) {',
      '    if (layer.index === ctx.layout.layers[0].index) {',
      '      ;(globalThis as { kept?: unknown }).kept = Array.from({ length: 60 }, (_, i) => Array.from({ length: 1e5 }, (_, j) => ({ i, j })))',
      "      setTimeout(() => { throw new Error('scores went stale') }, 0)",
      '    }',
      '    return { removed: 0, total: layer.numExperts }',
      '  },',
      '})',
      '',
    ].join('\n'))
  })

  for (const busyMs of [10, 20, 30, 45]) {
    it(`the run closes and the process carries on (main thread busy ${busyMs} ms after the layer)`, () => {
      const file = path.join(project, `probe-${busyMs}.ts`)
      fs.writeFileSync(file, `import { startMethodInWorker } from './src/methods/applyInWorker.ts'
import { layoutOf, loadMethod, resolveParams } from './src/methods/registry.ts'
import { openCheckpoint } from './src/model/checkpoint.ts'
const ckpt = openCheckpoint(${JSON.stringify(model)})
const m = await loadMethod('heavy-stray')
const info = { key: '', needs: [], sequences: 0, length: 0, tokens: 0, source: 'none', seconds: 0 }
const [first] = layoutOf(ckpt).layers.map(l => l.index)
const run = await startMethodInWorker(m, resolveParams(m, { ratio: 0.25 }), ckpt, 'seed', undefined)
const layer = await run.layer(first, { info }).then(() => 'done', (e: any) => e.code)
const t = Date.now()
while (Date.now() - t < ${busyMs}) {} // busy: the stray error waits in this thread's queue
await run.close()
console.log(JSON.stringify({ layer, closed: true }))`)
      const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: project, encoding: 'utf8', env: { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') }, timeout: 120_000 })
      assert.equal(r.status, 0, `exit ${r.status} (signal ${r.signal})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!)
      assert.equal(out.closed, true)
      // The layer itself succeeded, or failed with the stray error when that arrived first.
      assert.ok(['done', 'METHOD_FAILED'].includes(out.layer), out.layer)
    })
  }
})
