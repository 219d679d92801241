// Sweeps end to end: every cell stored once, resumable after SIGKILL at random moments, results
// independent of workers and batch size, models never mixed, shards merge into the full result.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { snapshot } from './storeSnapshot.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { poisonTensors } from '../helpers/rawSafetensors.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model-a'), { family: 'mixtral', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 61 })
writeTinyCheckpoint(path.join(dir, 'model-b'), { family: 'mixtral', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 62 })

function writeConfig(name: string, body: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.config.ts`)
  fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify(body, null, 2)})\n`)
  return file
}
const base = {
  models: { a: 'model-a' },
  methods: ['frequency-pruning', { method: 'expert-merging', params: { algorithm: 'm-smoe' } }, 'neuron-top-k'],
  ratios: [0, 0.5],
  tasks: ['brown-cloze', 'brown-agreement'],
  subset: { sample: 12 },
  calibration: { sequences: 4, length: 32 },
  pool: { workers: 1, threads: 1 },
}
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

function maxDiff(a: ReturnType<typeof snapshot>, b: ReturnType<typeof snapshot>): number {
  assert.deepEqual(a.map(x => x.cell), b.map(x => x.cell))
  let worst = 0
  a.forEach((x, i) => x.lls.forEach((pair: any[], j: number) => (pair[1] as number[]).forEach((v, k) => { worst = Math.max(worst, Math.abs(v - (b[i].lls[j][1] as number[])[k])) })))
  return worst
}

describe('moe-harness sweep', () => {
  const full = path.join(dir, 'full.sqlite')
  const config = writeConfig('base', base)
  // A larger sweep, so that each kill lands with work left: during start-up, calibration,
  // transforms, scoring or a database write. Sized by scoring work (~15 s on 2 cores): variants
  // that share a session now cost almost nothing to build, so documents are what takes time.
  const big = writeConfig('big', { ...base, methods: ['frequency-pruning', 'reap', 'neuron-top-k', 'novice-replacement'], ratios: [0, 0.25, 0.5], tasks: ['brown-cloze', 'brown-agreement', 'brown-next-sentence'], subset: { sample: 160 } })
  const reference = path.join(dir, 'big-reference.sqlite')

  it('stores every cell once; a rerun scores nothing', () => {
    const r = runCli(['sweep', '--config', config, '--db', full, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!)
    // 3 methods × 2 ratios × 2 tasks = 12 cells; the three ratio-0 variants are one model, scored once.
    assert.equal(summary.cells, 12)
    assert.equal(summary.completed + summary.skipped, 12)
    assert.equal(summary.completed, 8)
    const again = JSON.parse(runCli(['sweep', '--config', config, '--db', full, '--json'], { env }).stdout.trim().split('\n').pop()!)
    assert.equal(again.completed, 0)
    assert.equal(again.skipped, 12)
    // Two calibrated methods (frequency-pruning, expert-merging) over the ratios: one calibration pass.
    assert.equal(fs.readdirSync(path.join(env.MOE_HARNESS_HOME, 'calibration')).filter(f => f.endsWith('.v8')).length, 1)
    assert.match(r.stderr, /calibration for a: computed/)
    const s = new ResultsStore(full, { readonly: true })
    assert.equal(s.all<any>('SELECT COUNT(*) AS n FROM runs')[0].n, 8)
    assert.equal(s.all<any>("SELECT COUNT(*) AS n FROM runs WHERE status = 'complete'")[0].n, 8)
    s.close()
  })

  it('scores do not depend on the worker count or the batch size (<= 1e-6)', () => {
    const other = path.join(dir, 'two-workers.sqlite')
    const cfg = writeConfig('two', { ...base, pool: { workers: 2, threads: 1 }, batchTokens: 96 })
    const r = runCli(['sweep', '--config', cfg, '--db', other], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.ok(maxDiff(snapshot(full), snapshot(other)) <= 1e-6)
  })

  it('survives SIGKILL at random moments: the reruns end with every cell complete exactly once and identical results', async () => {
    assert.equal(runCli(['sweep', '--config', big, '--db', reference], { env }).status, 0)
    const killed = path.join(dir, 'killed.sqlite')
    const rng = mulberry32(2024)
    const wanted = Number(process.env.SWEEP_KILLS ?? 20)
    let interrupted = 0, attempts = 0
    while (interrupted < wanted && attempts < wanted * 3) {
      attempts++
      const child = spawn(process.execPath, [path.join(ROOT, 'bin/moe-harness.mjs'), 'sweep', '--config', big, '--db', killed], { env: { ...process.env, ...env }, stdio: 'ignore' })
      const exited = new Promise<number | null>(res => child.on('exit', code => res(code)))
      const timer = setTimeout(() => child.kill('SIGKILL'), 200 + rng() * 2800)
      const code = await exited
      clearTimeout(timer)
      if (code === null) interrupted++
      else break // the sweep finished before the kill: nothing left to interrupt
    }
    const r = runCli(['sweep', '--config', big, '--db', killed, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.ok(interrupted >= wanted, `only ${interrupted} kills landed before the sweep completed`)
    const s = new ResultsStore(killed, { readonly: true })
    const dupes = s.all<any>('SELECT COUNT(*) AS n FROM (SELECT model_id, content_hash, task, subset, scoring_key, COUNT(*) c FROM runs GROUP BY 1,2,3,4,5 HAVING c > 1)')[0].n
    assert.equal(dupes, 0)
    const orphans = s.all<any>('SELECT COUNT(*) AS n FROM metrics WHERE run_id NOT IN (SELECT run_id FROM runs)')[0].n
    assert.equal(orphans, 0)
    s.close()
    const a = snapshot(reference), b = snapshot(killed)
    assert.ok(b.every(c => c.status === 'complete'))
    assert.equal(maxDiff(a, b), 0)
    assert.deepEqual(a.map(c => c.metrics), b.map(c => c.metrics))
  })

  it('Ctrl-C stops cleanly with exit 130, and the next run resumes', async () => {
    const db = path.join(dir, 'sigint.sqlite')
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/moe-harness.mjs'), 'sweep', '--config', big, '--db', db], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', d => { stderr += d })
    const exited = new Promise<number | null>(res => child.on('exit', code => res(code)))
    // Interrupt once scoring has begun.
    while (!/sweep .*\d+\/\d+/.test(stderr) && child.exitCode === null) await new Promise(res => setTimeout(res, 100))
    await new Promise(res => setTimeout(res, 1500))
    child.kill('SIGINT')
    assert.equal(await exited, 130, stderr)
    assert.match(stderr, /interrupted/)
    const r = runCli(['sweep', '--config', big, '--db', db, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.ok(JSON.parse(r.stdout.trim().split('\n').pop()!).skipped > 0, 'the first run had stored cells')
    assert.equal(maxDiff(snapshot(reference), snapshot(db)), 0)
  })

  it('a failing cell is recorded with its error and the sweep goes on', () => {
    // model-c has a NaN in an expert's weights: every score it produces is NaN.
    const broken = writeTinyCheckpoint(path.join(dir, 'model-c'), { family: 'mixtral', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 63 })
    poisonTensors(path.join(broken.dir, 'model.safetensors'), Array.from({ length: 6 }, (_, e) => `model.layers.0.block_sparse_moe.experts.${e}.w2.weight`))
    const cfg = writeConfig('broken', { ...base, methods: ['neuron-top-k'], models: { a: 'model-a', c: 'model-c' } })
    const db = path.join(dir, 'broken.sqlite')
    const r = runCli(['sweep', '--config', cfg, '--db', db, '--json'], { env })
    assert.equal(r.status, 1, 'a sweep with failed cells exits non-zero')
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!)
    assert.equal(summary.failed, 4)
    assert.equal(summary.completed, 4)
    // The summary names each failed cell and why.
    assert.match(r.stderr, /4 cell\(s\) failed:/)
    for (const ratio of [0, 0.5]) for (const task of ['brown-cloze', 'brown-agreement']) {
      // The model's weights are checked before any work (sweep/modelChecks.ts): its cells fail, the other model's are scored.
      assert.match(r.stderr, new RegExp(`\\n  c neuron-top-k \\{"ratio":${ratio}\\} ${task}: TENSOR_NONFINITE \\(phase check\\): model 'c': .*NaN`))
    }
    assert.equal(summary.failures.length, 4)
    assert.ok(summary.failures.every((f: any) => f.code === 'TENSOR_NONFINITE' && f.phase === 'check'), JSON.stringify(summary.failures))
    // start: the same sweep (all cells stored now, the failed ones retried), the site, and exit 1.
    const site = path.join(dir, 'broken-site')
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('"pool"', `"report": { "outDir": ${JSON.stringify(site)} },\n  "pool"`))
    const st = runCli(['start', '--config', cfg, '--db', db], { env })
    assert.equal(st.status, 1, st.stderr)
    assert.match(st.stderr, /4 cell\(s\) failed:/)
    assert.ok(fs.existsSync(path.join(site, 'index.html')), 'the site is still built')
    const s = new ResultsStore(db, { readonly: true })
    // Stored as the model's failed variants (one per ratio), as a variant whose method failed is.
    const failed = s.all<any>("SELECT ratio, error, error_json FROM variants WHERE status = 'failed' ORDER BY ratio")
    const failedRuns = s.all<any>("SELECT run_id FROM runs WHERE status = 'failed'")
    s.close()
    assert.deepEqual(failed.map(f => f.ratio), [0, 0.5])
    assert.equal(failedRuns.length, 0)
    assert.ok(failed.every(f => /^TENSOR_NONFINITE \(phase check\): model 'c': .*NaN/.test(f.error)), JSON.stringify(failed))
    assert.ok(failed.every(f => JSON.parse(f.error_json).code === 'TENSOR_NONFINITE' && JSON.parse(f.error_json).phase === 'check'), JSON.stringify(failed))
  })

  it('two models sharing one database never reuse each other\'s results', () => {
    const shared = path.join(dir, 'shared.sqlite')
    const one = writeConfig('one', { ...base, methods: ['frequency-pruning'] })
    const two = writeConfig('two-models', { ...base, methods: ['frequency-pruning'], models: { b: 'model-b' } })
    assert.equal(runCli(['sweep', '--config', one, '--db', shared], { env }).status, 0)
    const r = JSON.parse(runCli(['sweep', '--config', two, '--db', shared, '--json'], { env }).stdout.trim().split('\n').pop()!)
    assert.equal(r.skipped, 0, 'nothing of model a may be reused for model b')
    assert.equal(r.completed, 4)
    const s = new ResultsStore(shared, { readonly: true })
    const models = s.all<any>('SELECT DISTINCT model_id FROM runs')
    assert.equal(models.length, 2)
    s.close()
    const snap = snapshot(shared)
    const accA = snap.find(c => c.cell.startsWith('a|') && c.cell.endsWith('brown-cloze'))!.lls
    const accB = snap.find(c => c.cell.startsWith('b|') && c.cell.endsWith('brown-cloze'))!.lls
    assert.notDeepEqual(accA, accB)
  })

  it('a checkpoint moved to another folder re-publishes its prepared variants (no stale model path)', () => {
    // Variant folders are keyed by content; the path they name must follow the checkpoint.
    writeTinyCheckpoint(path.join(dir, 'moved-1'), { family: 'mixtral', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 63 })
    const one = { ...base, methods: ['frequency-pruning'], ratios: [0.5], tasks: ['brown-cloze'] }
    const first = runCli(['sweep', '--config', writeConfig('moved-1', { ...one, models: { m: 'moved-1' } }), '--db', path.join(dir, 'moved-1.sqlite')], { env })
    assert.equal(first.status, 0, first.stderr)
    fs.renameSync(path.join(dir, 'moved-1'), path.join(dir, 'moved-2'))
    const second = runCli(['sweep', '--config', writeConfig('moved-2', { ...one, models: { m: 'moved-2' } }), '--db', path.join(dir, 'moved-2.sqlite'), '--json'], { env })
    assert.equal(second.status, 0, second.stderr)
    const r = JSON.parse(second.stdout.trim().split('\n').pop()!)
    assert.equal(r.completed, 1)
    assert.deepEqual(snapshot(path.join(dir, 'moved-1.sqlite')).map(c => c.lls), snapshot(path.join(dir, 'moved-2.sqlite')).map(c => c.lls))
  })

  it('shards run separately and merge into the full result', () => {
    const parts = [0, 1].map(i => path.join(dir, `shard${i}.sqlite`))
    parts.forEach((db, i) => assert.equal(runCli(['sweep', '--config', config, '--db', db, '--shard', `${i}/2`], { env }).status, 0))
    const merged = path.join(dir, 'merged.sqlite')
    const r = runCli(['merge', ...parts, '--out', merged])
    assert.equal(r.status, 0, r.stderr)
    assert.equal(maxDiff(snapshot(full), snapshot(merged)), 0)
  })

  it('exports CSV and JSON', () => {
    const csv = path.join(dir, 'out.csv'), json = path.join(dir, 'out.json')
    const r = runCli(['export', '--db', full, '--csv', csv, '--json', json])
    assert.equal(r.status, 0, r.stderr)
    const lines = fs.readFileSync(csv, 'utf8').trim().split('\n')
    assert.match(lines[0], /^model,model_id,method,params,ratio,achieved_ratio,variant_id,task,task_version,subset,metric,value,stderr,docs,status,error,device,ort_version,scoring_key,data_sha256$/)
    const rows = JSON.parse(fs.readFileSync(json, 'utf8'))
    assert.equal(rows.length, lines.length - 1)
    assert.ok(rows.some((x: any) => x.method === 'neuron-top-k' && x.ratio === 0.5 && x.metric === 'acc'))
  })

  it('invalid configs fail before any work with the offending field', () => {
    const bad = writeConfig('bad', { ...base, ratios: [0, 1.5] })
    const r = runCli(['sweep', '--config', bad, '--db', path.join(dir, 'bad.sqlite')], { env })
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /HARNESS_CONFIG_INVALID.*ratios\.1/)
    const typo = writeConfig('typo', { ...base, methods: ['frequency-prunin'] })
    const t = runCli(['sweep', '--config', typo, '--db', path.join(dir, 'bad.sqlite')], { env })
    assert.match(t.stderr, /Did you mean: frequency-pruning/)
    assert.equal(fs.existsSync(path.join(dir, 'bad.sqlite')), false, 'no database was created')
  })
})
