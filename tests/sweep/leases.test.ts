// Cooperating sweeps: 2 and 3 processes on one SQLite store split the cells (each scored exactly once
// in total, counted from every process's own summary), end with the results of a single process, and
// a SIGKILLed process's leased cells are taken over once its leases expire.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { assertSameResults, runCounts, snapshot } from './storeSnapshot.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model-a'), { family: 'mixtral', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 71 })
const config = path.join(dir, 'harness.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { a: 'model-a' },
  methods: ['frequency-pruning', 'neuron-top-k', { method: 'magnitude-pruning', params: { score: 'wanda' } }],
  ratios: [0, 0.25, 0.5],
  tasks: ['brown-cloze', 'brown-agreement'],
  subset: { sample: 16 },
  calibration: { sequences: 4, length: 32 },
  pool: { workers: 1, threads: 1 },
})})\n`)
const env = { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') }
const BIN = path.join(ROOT, 'bin/moe-harness.mjs')

interface Proc { child: ReturnType<typeof spawn>; stdout: string; stderr: string; exited: Promise<number | null> }
function start(db: string, extra: string[] = []): Proc {
  const child = spawn(process.execPath, [BIN, 'sweep', '--config', config, '--db', db, '--json', ...extra], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const p: Proc = { child, stdout: '', stderr: '', exited: new Promise(res => child.on('exit', code => res(code))) }
  child.stdout!.on('data', d => { p.stdout += d })
  child.stderr!.on('data', d => { p.stderr += d })
  return p
}

describe('cooperating sweeps on one store', () => {
  const reference = path.join(dir, 'reference.sqlite')
  let scoredAlone = 0
  let cells = 0

  it('one process: the reference (every run scored once)', () => {
    const r = runCli(['sweep', '--config', config, '--db', reference, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const s = lastJson(r.stdout)
    // 3 methods × 3 ratios × 2 tasks = 18 cells; the three ratio-0 variants are the same model, scored once.
    assert.equal(s.cells, 18)
    assert.equal(s.failed, 0)
    scoredAlone = s.completed
    cells = s.cells
    assert.equal(scoredAlone, runCounts(reference).runs)
    assert.ok(scoredAlone >= 12)
  })

  for (const n of [2, 3]) {
    it(`${n} concurrent processes split the cells: each run scored exactly once in total, results identical`, async () => {
      const db = path.join(dir, `together-${n}.sqlite`)
      const procs = Array.from({ length: n }, () => start(db))
      const codes = await Promise.all(procs.map(p => p.exited))
      procs.forEach((p, i) => assert.equal(codes[i], 0, p.stderr))
      const summaries = procs.map(p => lastJson(p.stdout))
      const scored = summaries.map(s => s.completed as number)
      // The scoring work, counted by each process: no cell scored twice, none left out.
      assert.equal(scored.reduce((a, b) => a + b, 0), scoredAlone, `scored per process: ${scored.join(', ')}`)
      assert.ok(scored.filter(x => x > 0).length >= 2, `the work was split: ${scored.join(', ')}`)
      for (const s of summaries) {
        assert.equal(s.completed + s.skipped, cells, 'every process accounts for every cell')
        assert.equal(s.failed, 0)
      }
      assert.deepEqual(runCounts(db), { runs: scoredAlone, duplicates: 0, incomplete: 0 })
      assertSameResults(snapshot(reference), snapshot(db))
      const store = new ResultsStore(db, { readonly: true })
      assert.equal(store.all<any>('SELECT COUNT(*) AS n FROM leases')[0].n, 0, 'every lease was released')
      store.close()
    })
  }

  it('SIGKILL of one of two concurrent processes mid-sweep loses nothing: the other takes over its leased cell', async () => {
    const db = path.join(dir, 'killed.sqlite')
    const victim = start(db, ['--lease-seconds', '2'])
    const survivor = start(db, ['--lease-seconds', '2'])
    const victimOwner = (owner: string) => owner.split(':')[1] === String(victim.child.pid)
    // Kill the victim while it holds a lease (it is scoring a cell), once some runs are stored.
    let killedHolding: string | undefined
    const deadline = Date.now() + 120_000
    while (!killedHolding && Date.now() < deadline && victim.child.exitCode === null) {
      await new Promise(res => setTimeout(res, 50))
      if (!fs.existsSync(db)) continue
      try {
        const s = new ResultsStore(db, { readonly: true })
        const runs = s.all<any>('SELECT COUNT(*) AS n FROM runs')[0].n
        const lease = s.all<any>('SELECT cell_key, claimed_by FROM leases').find(l => victimOwner(l.claimed_by))
        s.close()
        if (runs >= 1 && lease) {
          victim.child.kill('SIGKILL')
          killedHolding = lease.cell_key
        }
      } catch { /* the store is being created */ }
    }
    assert.ok(killedHolding, `the victim never held a lease while others were stored: ${victim.stderr}`)
    assert.equal(await victim.exited, null, 'killed by SIGKILL')
    assert.equal(await survivor.exited, 0, survivor.stderr)
    const s = lastJson(survivor.stdout)
    assert.equal(s.failed, 0)
    assert.equal(s.completed + s.skipped, cells)
    // Nothing lost, nothing twice: every run stored once, identical to the single process.
    assert.deepEqual(runCounts(db), { runs: scoredAlone, duplicates: 0, incomplete: 0 })
    assertSameResults(snapshot(reference), snapshot(db))
    const store = new ResultsStore(db, { readonly: true })
    assert.equal(store.all<any>('SELECT COUNT(*) AS n FROM leases')[0].n, 0, 'the dead lease was taken over and released')
    store.close()
  })

  it('a concurrent process waits for a live lease, then takes over a dead process\'s lease', async () => {
    // A lease held by a process that no longer exists (as after SIGKILL) and not yet expired.
    const db = path.join(dir, 'stale.sqlite')
    fs.copyFileSync(reference, db)
    const store = new ResultsStore(db)
    const run = store.all<any>('SELECT * FROM runs ORDER BY run_id LIMIT 1')[0]
    store.db.prepare('DELETE FROM runs WHERE run_id = ?').run(run.run_id)
    const key = { model_id: run.model_id, content_hash: run.content_hash, task: run.task, task_version: run.task_version, subset: run.subset, scoring_key: run.scoring_key, data_sha256: run.data_sha256 }
    assert.equal(store.claimCell(key, 'dead-host:1:x', 3000, new Date().toISOString()), 'claimed')
    assert.equal(store.claimCell(key, 'other:2:y', 3000, new Date().toISOString()), 'busy', 'a live lease is exclusive')
    store.close()
    const t0 = Date.now()
    const r = start(db)
    assert.equal(await r.exited, 0, r.stderr)
    const s = lastJson(r.stdout)
    assert.equal(s.completed, 1, 'only the missing cell is scored')
    assert.ok(Date.now() - t0 >= 2000, 'it waited for the lease to expire')
    assertSameResults(snapshot(reference), snapshot(db))
  })

  it('a lease left by a dead process of this machine is taken over at once, not after its expiry', async () => {
    const db = path.join(dir, 'dead-local.sqlite')
    fs.copyFileSync(reference, db)
    const store = new ResultsStore(db)
    const run = store.all<any>('SELECT * FROM runs ORDER BY run_id DESC LIMIT 1')[0]
    store.db.prepare('DELETE FROM runs WHERE run_id = ?').run(run.run_id)
    const key = { model_id: run.model_id, content_hash: run.content_hash, task: run.task, task_version: run.task_version, subset: run.subset, scoring_key: run.scoring_key, data_sha256: run.data_sha256 }
    const gone = spawn('true')
    await new Promise(res => gone.on('exit', res))
    // Ten minutes: waiting for it would time the test out.
    assert.equal(store.claimCell(key, `${os.hostname()}:${gone.pid}:x`, 600_000, new Date().toISOString()), 'claimed')
    store.close()
    const r = start(db)
    const timeout = setTimeout(() => r.child.kill('SIGKILL'), 120_000)
    assert.equal(await r.exited, 0, r.stderr)
    clearTimeout(timeout)
    assert.equal(lastJson(r.stdout).completed, 1)
    assertSameResults(snapshot(reference), snapshot(db))
  })
})
