// A method plugin that computes for a long time no longer stops the sweep's main thread (its apply runs
// in a worker thread, src/methods/applyInWorker.ts): timers fire meanwhile, so the lease heartbeat keeps
// a cell being scored from being taken over, and a second Ctrl-C quits a real sweep at once (the rerun
// completes); ctx.rng gives the same edits in either thread, a plugin's error keeps its code, fields and
// line, and a plugin edited after the process loaded it still runs as loaded.
// Plugins are written into a copy of the project (methods/ of the shared tree is never touched).
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { ROOT } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { copyProject, writeMethodPlugin } from '../helpers/projectCopy.ts'

const dir = tmpDir()
const project = path.join(dir, 'project')
const home = path.join(dir, 'home')
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 91 }).dir

/** A plugin whose apply's body is `body`, on line 9 of the file. */
function plugin(name: string, body: string): void {
  writeMethodPlugin(project, name, { importLine: "import fs from 'node:fs'", applyArgs: 'params, layout, experts, weights, rng', body })
}

// Scales one expert weight by rng values (an edited tensor: spilled to disk when MOE_HARNESS_SPILL_MB=0),
// touches $MARKER, computes for $SLOW_MS milliseconds, then removes experts chosen by rng.
const SLOW_RNG = [
  'const first = layout.names.layers[layout.layers[0].index].experts![0].gate',
  'const w = weights.get(first); for (let i = 0; i < w.length; i++) w[i] *= 0.5 + rng(); weights.set(first, w)',
  'if (process.env.MARKER) fs.writeFileSync(process.env.MARKER, String(process.pid))',
  'const until = Date.now() + Number(process.env.SLOW_MS ?? 0); while (Date.now() < until) { /* computing */ }',
  'let removed = 0, total = 0',
  'for (const l of layout.layers) { const k = Math.floor(params.ratio * l.numExperts); const picked = new Set<number>(); while (picked.size < k) picked.add(Math.floor(rng() * l.numExperts)); for (const e of picked) experts.remove(l.index, e); removed += k; total += l.numExperts }',
  'return { achievedRatio: removed / total }',
].join('; ')

// Runs in the project copy (its src/ and methods/); prints one JSON line.
const PROBE = `
import fs from 'node:fs'
import { applyMethod } from './src/methods/applyMethod.ts'
import { applyMethodInWorker } from './src/methods/applyInWorker.ts'
import { loadMethod, resolveParams } from './src/methods/registry.ts'
import { openCheckpoint } from './src/model/checkpoint.ts'
import { contentHash } from './src/edits/variantEdits.ts'
import { planVariant, prepareVariant } from './src/variants/prepare.ts'
import { runKey } from './src/identity/keys.ts'
import { ResultsStore } from './src/store/resultsStore.ts'
import { CellLeases } from './src/sweep/leases.ts'
const ckpt = openCheckpoint(process.argv[2])
const prep = { calibration: { source: 'builtin', sequences: 2, length: 32, seed: 1 }, device: 'cpu' as const, threads: 1 }
const out: Record<string, unknown> = {}
const method = await loadMethod('slow-rng')
const params = resolveParams(method, { ratio: 0.34 })
process.env.SLOW_MS = '0'
out.hashes = {
  mainThread: contentHash((await applyMethod(method, params, ckpt, undefined, 'seed-a')).edits),
  worker: contentHash((await applyMethodInWorker(method, params, ckpt, undefined, 'seed-a')).edits),
  otherSeed: contentHash((await applyMethodInWorker(method, params, ckpt, undefined, 'seed-b')).edits),
}
let ticks = 0
const timer = setInterval(() => { ticks++ }, 20)
process.env.SLOW_MS = '2000'
await applyMethod(method, params, ckpt, undefined, 'seed-a')
out.ticksMainThread = ticks
ticks = 0
// A cell this process scores meanwhile: its lease (1 s, renewed every 250 ms) must outlive the 2 s method.
// The slack is wide because CI's two cores are busy with other test files.
const store = new ResultsStore(process.argv[3])
const mine = new CellLeases(store, 1000), other = new CellLeases(store, 1000)
const cell = runKey({ modelId: 'm', contentHash: 'c', task: 't', taskVersion: 1, subset: 's', scoringKey: 'k', dataSha256: 'd' })
out.claims = [mine.claim(cell)]
const t0 = performance.now()
await prepareVariant(ckpt, await planVariant(ckpt, 'slow-rng', { ratio: 0.34 }), prep)
out.ticksWorker = ticks
out.workerMs = performance.now() - t0
;(out.claims as string[]).push(other.claim(cell))
clearInterval(timer)
mine.close(); other.close(); store.close()
out.errors = {}
for (const name of ['throws', 'type-error', 'missing-tensor']) {
  try {
    await prepareVariant(ckpt, await planVariant(ckpt, name, { ratio: 0.25 }), prep)
  } catch (e: any) {
    ;(out.errors as any)[name] = { code: e.code, message: e.message, method: e.method, phase: e.phase }
  }
}
// Edited after this process loaded it: the variant id names the loaded code, so that code must run.
const edited = await planVariant(ckpt, 'edited', { ratio: 0.25 })
fs.writeFileSync('methods/edited.ts', fs.readFileSync('methods/edited.ts', 'utf8').replace('experts.remove(l.index, 0)', 'experts.remove(l.index, 1)'))
out.editedRemoved = Object.values((await prepareVariant(ckpt, edited, prep)).edits.layers).map(h => h.disabled)
console.log(JSON.stringify(out))
`

describe('a slow or failing method plugin in a worker thread', () => {
  let probe: any
  before(() => {
    copyProject(project, ['src', 'methods', 'bin', 'tasks', 'package.json'])
    plugin('slow-rng', SLOW_RNG)
    plugin('throws', "throw new Error('no scores for this layer')")
    plugin('type-error', 'const s: any = undefined; return s.achievedRatio')
    plugin('missing-tensor', "weights.set('model.layers.0.no.such.weight', new Float32Array(4)); return { achievedRatio: 0 }")
    plugin('edited', 'for (const l of layout.layers) experts.remove(l.index, 0); return { achievedRatio: 1 / layout.layers[0].numExperts }')
    fs.writeFileSync(path.join(project, 'probe.ts'), PROBE)
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'probe.ts', model, path.join(dir, 'leases.sqlite')], { cwd: project, encoding: 'utf8', env: { ...process.env, MOE_HARNESS_HOME: home }, timeout: 120_000 })
    assert.equal(r.status, 0, r.stderr)
    probe = JSON.parse(r.stdout.trim().split('\n').pop()!)
  })

  it('ctx.rng gives the same edits in the worker as in the main thread (and depends on the seed)', () => {
    assert.equal(probe.hashes.worker, probe.hashes.mainThread)
    assert.notEqual(probe.hashes.otherSeed, probe.hashes.mainThread)
  })

  it('main-thread timers fire while the method computes (they did not when it ran on the main thread)', t => {
    t.diagnostic(`20 ms timer during 2000 ms of computing: ${probe.ticksMainThread} ticks on the main thread, ${probe.ticksWorker} with the worker (prepareVariant ${Math.round(probe.workerMs)} ms)`)
    // 2000 ms of computing with a 20 ms timer: about 100 ticks; on the main thread the queued tick runs once after.
    assert.ok(probe.ticksMainThread <= 2, `main thread: ${probe.ticksMainThread} ticks`)
    assert.ok(probe.ticksWorker >= 20, `worker: ${probe.ticksWorker} ticks in ${probe.workerMs} ms`)
  })

  it("the lease of a cell being scored is renewed while the method computes: a cooperating process finds it busy", () => {
    assert.deepEqual(probe.claims, ['claimed', 'busy'])
  })

  it("a plugin's error keeps its code, method, phase and the plugin's line", () => {
    const e = probe.errors
    assert.deepEqual(Object.keys(e).sort(), ['missing-tensor', 'throws', 'type-error'])
    for (const [name, err] of Object.entries<any>(e)) assert.deepEqual([err.code, err.method, err.phase], ['METHOD_FAILED', name, 'apply'], name)
    assert.match(e.throws.message, /^no scores for this layer \(at methods\/throws\.ts:9:\d+\)$/)
    assert.match(e['type-error'].message, /^TypeError: Cannot read properties of undefined \(reading 'achievedRatio'\) \(at methods\/type-error\.ts:9:\d+\)$/)
    assert.match(e['missing-tensor'].message, /^TENSOR_MISSING: no tensor 'model\.layers\.0\.no\.such\.weight'.*\(at methods\/missing-tensor\.ts:9:\d+\)$/)
  })

  it('a method file edited after this process loaded it runs as loaded (the code its variant id names)', () => {
    assert.deepEqual(probe.editedRemoved, [[0], [0]])
  })

  it('a second Ctrl-C during a slow apply quits a real sweep at once, leaves no spill folder, and a rerun completes', async t => {
    const config = path.join(dir, 'harness.config.ts')
    fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(project, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
      models: { tiny: model }, methods: ['slow-rng'], ratios: [0.34], tasks: ['brown-cloze'], subset: { sample: 8 }, pool: { workers: 1, threads: 1 },
    })})\n`)
    const db = path.join(dir, 'sweep.sqlite')
    const marker = path.join(dir, 'apply-started')
    const args = [path.join(project, 'bin/moe-harness.mjs'), 'sweep', '--config', config, '--db', db, '--json']
    const env = { ...process.env, MOE_HARNESS_HOME: home, MOE_HARNESS_SPILL_MB: '0' }
    const child = spawn(process.execPath, args, { cwd: dir, env: { ...env, SLOW_MS: '60000', MARKER: marker }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', d => { stderr += d })
    const exited = new Promise<number | null>(res => child.on('exit', code => res(code)))
    t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }) // a failed assertion leaves no process behind
    const deadline = Date.now() + 90_000
    while (!fs.existsSync(marker)) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `the method never started: ${stderr}`)
      await new Promise(res => setTimeout(res, 50))
    }
    const variants = path.join(home, 'variants')
    const spills = () => (fs.existsSync(variants) ? fs.readdirSync(variants).filter(f => f.startsWith('.spill-')) : [])
    assert.equal(spills().length, 1, 'the worker spilled the edited tensor before computing')
    const t0 = performance.now()
    child.kill('SIGINT')
    while (!stderr.includes('interrupted:')) {
      assert.ok(performance.now() - t0 < 5000, `the first Ctrl-C was not handled while the method computed: ${stderr}`)
      await new Promise(res => setTimeout(res, 20))
    }
    child.kill('SIGINT')
    const code = await exited
    const seconds = (performance.now() - t0) / 1000
    assert.equal(code, 130, stderr)
    assert.ok(seconds < 10, `quit after ${seconds.toFixed(1)} s (the method computes for 60 s)`)
    t.diagnostic(`quit ${seconds.toFixed(2)} s after the first Ctrl-C`)
    assert.deepEqual(spills(), [], 'the spill folder the worker wrote into is removed')

    const rerun = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8', env: { ...env, SLOW_MS: '0' }, timeout: 180_000 })
    assert.equal(rerun.status, 0, rerun.stderr)
    const summary = JSON.parse(rerun.stdout.trim().split('\n').pop()!)
    assert.deepEqual([summary.cells, summary.completed, summary.failed], [1, 1, 0])
  })
})
