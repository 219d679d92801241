// A cell that meets the kernel's vm.max_map_count (MAP_LIMIT) was stored as a failure of the variant
// or the run, shown on the leaderboard as the method's, and the sweep went on to fail every later cell
// alike. A limit of the machine is not the variant's: nothing is stored as failed, the sweep stops as
// an interrupt does (the cells scored are kept), exits 1 with the fix and "rerun resumes" on stderr,
// and the rerun, once the mappings are free, scores the cells left.
//
// The process really holds most of its mappings: a preload (holdMappingsPreload.mjs) opens real
// onnxruntime sessions of a 128-expert checkpoint before the CLI starts, past 80% of the limit (where
// the harness blames a thread's death on the mappings, src/util/memoryMaps.ts nearMapLimit) and below
// what the pool plan refuses. A method's thread then stops as out of memory (a plugin that fills the
// heap, under --max-old-space-size): the method thread's MAP_LIMIT path (src/methods/applyInWorker.ts).
// Filling the mappings to the very limit instead aborts the whole process in V8 as often as it fails
// one cell (measured: "FATAL ERROR: ... JavaScript heap out of memory"), so the test stops short of it.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { MAP_COUNT_FIX, mapCount, mapCountLimit, NEAR_MAP_LIMIT } from '../../src/util/memoryMaps.ts'
import { copyProject, writeMethodPlugin } from '../helpers/projectCopy.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const limit = mapCountLimit()
const skip = limit === undefined || mapCount() === undefined ? 'no vm.max_map_count here (not Linux)' : limit > 100_000 ? `vm.max_map_count ${limit}: too many mappings to hold in a test` : false

describe('a sweep that meets vm.max_map_count', { skip }, () => {
  const dir = tmpDir('moe-map-stop-')
  const project = copyProject(path.join(dir, 'project'), ['src', 'methods', 'tasks', 'bin', 'package.json'])
  fs.copyFileSync(path.join(import.meta.dirname, 'holdMappingsPreload.mjs'), path.join(project, 'holdMappingsPreload.mjs'))
  // Fills the method thread's heap when asked (the rerun does not ask), else removes an expert (another than one-expert's: another variant).
  writeMethodPlugin(project, 'heap-filler', {
    importLine: '', applyArgs: 'layout, experts',
    body: "if (process.env.MOE_TEST_FILL_HEAP) { const kept: number[][] = []; for (;;) kept.push(new Array(1e6).fill(0.5)) } experts.remove(layout.layers[0].index, 1); return { achievedRatio: 0.125 }",
  })
  writeMethodPlugin(project, 'one-expert', { importLine: '', applyArgs: 'layout, experts', body: 'experts.remove(layout.layers[0].index, 0); return { achievedRatio: 0.125 }' })
  const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 29 }).dir
  // Qwen3-MoE routing at 128 experts, 4 layers, tiny width: 1575 tensors, one mapping each per session.
  const many = writeTinyCheckpoint(path.join(dir, 'many'), { family: 'qwen3_moe', experts: 128, topK: 2, layers: 4, hidden: 16, ffn: 8, seed: 5 }).dir
  const config = path.join(project, 'sweep.config.ts')
  // one-expert's cell first (config order), then heap-filler's.
  fs.writeFileSync(config, `import { defineConfig } from './src/index.ts'\nexport default defineConfig(${JSON.stringify({
    models: { m: model }, methods: ['one-expert', 'heap-filler'], ratios: [0.25], tasks: ['brown-cloze'], subset: { limit: 2 }, pool: { workers: 1, threads: 1 },
  })})\n`)
  const db = path.join(dir, 'results.sqlite')
  const env = { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') }
  const sweep = (nodeFlags: string[], extraEnv: Record<string, string> = {}) => spawnSync(process.execPath, [...nodeFlags, path.join(project, 'bin', 'moe-harness.mjs'), 'sweep', '--config', config, '--db', db, '--json'], {
    cwd: project, encoding: 'utf8', env: { ...env, ...extraEnv }, timeout: 400_000,
  })
  const rows = () => {
    const store = new ResultsStore(db, { readonly: true })
    try {
      return {
        runs: store.all<{ status: string }>('SELECT status FROM runs ORDER BY run_id').map(r => r.status),
        variants: store.all<{ method: string; status: string }>('SELECT method, status FROM variants ORDER BY method').map(v => `${v.method} ${v.status}`),
        sweeps: store.all<{ completed: number; failed: number; timings_json: string }>('SELECT completed, failed, timings_json FROM sweeps ORDER BY sweep_id'),
      }
    } finally {
      store.close()
    }
  }

  it('stores no failed variant or run, exits 1 naming the fix and that a rerun resumes; the rerun scores the rest', () => {
    // 3% above the mark where a thread's death is blamed on the mappings; the pool plan still fits one worker.
    const hold = Math.ceil((NEAR_MAP_LIMIT + 0.03) * limit!)
    const r = sweep(['--max-old-space-size=192', '--import', path.join(project, 'holdMappingsPreload.mjs')], {
      MOE_TEST_HOLD_MAPS: String(hold), MOE_TEST_HOLD_MODELS: many, MOE_TEST_FILL_HEAP: '1',
    })
    const held = Number(/^test: holding (\d+) memory mappings/m.exec(r.stderr)?.[1])
    assert.ok(held > NEAR_MAP_LIMIT * limit! && held <= hold, `held ${held} of ${limit}: ${r.stderr}`)
    assert.equal(r.status, 1, `exit ${r.status} (signal ${r.signal})\n${r.stderr}`)
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!)
    assert.equal(summary.stopped?.code, 'MAP_LIMIT', r.stderr)
    assert.equal(summary.stopped.method, 'heap-filler')
    assert.deepEqual([summary.cells, summary.completed, summary.failed, summary.failures, summary.interrupted], [2, 1, 0, [], false], r.stderr)
    assert.match(r.stderr, /^sweep stopping: m heap-filler r=0\.25 brown-cloze met a limit of this machine \(MAP_LIMIT, not stored as a failure\); no new cell starts$/m)
    assert.match(r.stderr, /^sweep stopped: m heap-filler \{"ratio":0\.25\} brown-cloze: MAP_LIMIT \(method heap-filler, phase apply\): its worker thread was stopped as out of memory, but not by the method or the JavaScript heap: this process holds \d+ memory mappings of the kernel's vm\.max_map_count \d+/m)
    assert.ok(r.stderr.includes(MAP_COUNT_FIX), r.stderr)
    assert.match(r.stderr, /nothing was stored as failed, and 1 of 2 cells is not scored\. Fix it as the message says, then rerun the same command: it resumes/)
    assert.doesNotMatch(r.stderr, /cell\(s\) failed|leaderboard: moe-harness report/)
    const stored = rows()
    assert.deepEqual(stored.runs, ['complete'], 'one-expert\'s cell is kept; no failed run')
    assert.deepEqual(stored.variants, ['one-expert ready'], 'no failed variant of heap-filler')
    assert.deepEqual([stored.sweeps[0]!.completed, stored.sweeps[0]!.failed, JSON.parse(stored.sweeps[0]!.timings_json).stoppedBy], [1, 0, 'MAP_LIMIT'])

    // The limit raised (here: nothing held, and the method no longer fills its heap): the rerun resumes.
    const rerun = sweep([])
    assert.equal(rerun.status, 0, rerun.stderr)
    const again = JSON.parse(rerun.stdout.trim().split('\n').pop()!)
    assert.deepEqual([again.completed, again.skipped, again.failed, again.stopped], [1, 1, 0, undefined], rerun.stderr)
    assert.deepEqual(rows().runs, ['complete', 'complete'])
    assert.deepEqual(rows().variants, ['heap-filler ready', 'one-expert ready'])
  })
})
