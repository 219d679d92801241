// A plugin's stray error (a timer or promise of its own) that fires after its method has replied ends the
// kept method thread (src/methods/applyInWorker.ts MethodWorker.idle). The next method, which may already
// have taken that thread, must not fail with it: before the fix a clean method applied right after such a
// plugin failed as METHOD_FAILED with the other plugin's message (6 runs in 6), a sweep cell lost for a
// method that did nothing wrong (2 probes in 3: the error came while it started or ran on the kept thread).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { copyProject, writeMethodPlugin } from '../helpers/projectCopy.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const project = path.join(dir, 'project')
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 17 }).dir

describe('a stray error of a method that has replied', () => {
  before(() => {
    copyProject(project, ['src', 'methods', 'tasks', 'package.json'])
    writeMethodPlugin(project, 'stray-after', { importLine: '', applyArgs: 'layout, experts', body: "setTimeout(() => { throw new Error('stray after apply') }, Number(process.env.STRAY_MS)); experts.remove(layout.layers[0].index, 0); return { achievedRatio: 0.125 }" })
    writeMethodPlugin(project, 'clean', { importLine: '', applyArgs: 'layout, experts', body: 'experts.remove(layout.layers[0].index, 1); return { achievedRatio: 0.125 }' })
  })

  it('does not fail the next method (queued right behind it, as a sweep\'s lanes queue them)', () => {
    const file = path.join(project, 'probe.ts')
    fs.writeFileSync(file, `import { applyMethodInWorker } from './src/methods/applyInWorker.ts'
import { loadMethod, resolveParams } from './src/methods/registry.ts'
import { openCheckpoint } from './src/model/checkpoint.ts'
const ckpt = openCheckpoint(${JSON.stringify(model)})
const stray = await loadMethod('stray-after'), clean = await loadMethod('clean')
const failure = (e: any) => ({ code: e.code, method: e.method, message: e.message })
const apply = (m: typeof clean) => applyMethodInWorker(m, resolveParams(m, { ratio: 0.25 }), ckpt, undefined, 'seed').then(r => r.edits.layers, failure)
const seconds = []
// The stray error reaches this thread before the clean method takes the kept thread, while it starts
// there, or while it runs: at least one of these delays lands in the start (its module loads there).
for (const ms of [0, 5, 15, 30]) {
  process.env.STRAY_MS = String(ms)
  seconds.push((await Promise.all([apply(stray), apply(clean)]))[1])
}
console.log(JSON.stringify({ seconds }))`)
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: project, encoding: 'utf8', env: { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') }, timeout: 120_000 })
    assert.equal(r.status, 0, `exit ${r.status} (signal ${r.signal})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!)
    for (const second of out.seconds) {
      assert.ok(!('code' in second), `the clean method failed: ${JSON.stringify(second)}`)
      assert.deepEqual(Object.values(second).map((h: any) => h.disabled), [[1]])
    }
  })
})
