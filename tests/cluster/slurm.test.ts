// `moe-harness sweep --slurm` against a real single-node Slurm (slurmctld + slurmd + munged started by
// the test): the array runs, one task is cancelled midway, the rerun resubmits only that shard, and the
// merged store equals a single-process sweep of the same plan. Fails (does not skip) without Slurm.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { assertSameResults, runCounts, snapshot } from '../sweep/storeSnapshot.ts'
import { missingSlurmBinaries, startLocalSlurm, type LocalSlurm } from './localSlurm.ts'

const dir = tmpDir()
const config = path.join(dir, 'harness.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') },
  methods: ['frequency-pruning', 'neuron-top-k'],
  // 0.25 (not 0.5): every one of the 3 shards gets cells, now that a model's ratio-0 cells of a task share one shard (plan.ts shardOfCell).
  ratios: [0, 0.25],
  tasks: ['brown-cloze', 'brown-agreement'],
  subset: { sample: 8 },
  calibration: { sequences: 4, length: 32 },
  pool: { workers: 1, threads: 1 },
  report: { outDir: 'site' },
  cluster: { arraySize: 3, cpusPerTask: 1, time: '00:10:00' },
}, null, 2)})\n`)
const home = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const BIN = path.join(ROOT, 'bin/moe-harness.mjs')
/** The run keys a store holds (complete or failed). */
const runKeys = (file: string) => {
  if (!fs.existsSync(file)) return new Set<string>() // a shard cancelled before it stored anything
  const s = new ResultsStore(file, { readonly: true })
  try {
    return new Set(s.all<Record<string, unknown>>('SELECT model_id, content_hash, task, task_version, subset, scoring_key, data_sha256 FROM runs').map(r => JSON.stringify(r)))
  } finally {
    s.close()
  }
}

describe('sweep --slurm on a local Slurm cluster', () => {
  let slurm: LocalSlurm | undefined
  const started = Date.now()
  const missing = missingSlurmBinaries()
  before(() => {
    if (missing.length === 0) slurm = startLocalSlurm({ cpus: 2 })
  })
  after(() => {
    slurm?.stop()
    process.stderr.write(`# slurm test: ${((Date.now() - started) / 1000).toFixed(1)} s including the daemons\n`)
  })
  const env = (): Record<string, string> => {
    // Without Slurm every test fails (never skips): CI installs it.
    assert.ok(slurm, `Slurm is not installed (missing: ${missing.join(', ')}): apt-get install -y slurm-wlm munge (.ci/run does this).`)
    return { ...home, ...slurm.env }
  }
  const reference = path.join(dir, 'reference.sqlite')
  const db = path.join(dir, 'results.sqlite')
  const squeue = (job: string) => spawnSync('squeue', ['--noheader', '--array', '--jobs', job, '--format=%K %T'], { env: { ...process.env, ...env() }, encoding: 'utf8' }).stdout

  it('a single-node Slurm runs here (slurm-wlm and munge installed)', () => {
    assert.deepEqual(missing, [], `Slurm is not installed (missing: ${missing.join(', ')}): apt-get install -y slurm-wlm munge (.ci/run does this).`)
    assert.ok(env().SLURM_CONF)
  })

  it('the reference: one process sweeps the same plan', () => {
    const r = runCli(['sweep', '--config', config, '--db', reference, '--json'], { env: home })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(lastJson(r.stdout).cells, 8)
  })

  it('sbatch refusing the job is a clear SLURM_REFUSED error naming the options', () => {
    const r = runCli(['sweep', '--slurm', '--config', config, '--db', path.join(dir, 'refused.sqlite'), '--partition', 'no-such-partition'], { env: env() })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[SLURM_REFUSED\]: sbatch refused .*sweep\.sbatch.*(invalid partition|Invalid partition).*--partition/s)
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
  })

  it('a shard with failed cells: its finished cells are merged, the failed ones listed with the error and the log, the report built, exit 1', () => {
    // Ratio 0.99 leaves one expert where the router picks two: those cells fail (METHOD_INFEASIBLE), the ratio-0 ones complete.
    const folder = path.join(dir, 'failing')
    fs.mkdirSync(folder)
    const failing = path.join(folder, 'harness.config.ts')
    fs.writeFileSync(failing, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
      models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0, 0.99], tasks: ['brown-cloze', 'brown-agreement'],
      subset: { sample: 4 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 }, report: { outDir: 'site' }, cluster: { arraySize: 1, cpusPerTask: 1 },
    })})\n`)
    const store = path.join(folder, 'results.sqlite')
    const r = runCli(['sweep', '--slurm', '--config', failing, '--db', store, '--poll-seconds', '0.5', '--json'], { env: env() })
    assert.equal(r.status, 1, r.stderr)
    const result = lastJson(r.stdout)
    assert.equal(result.failed.length, 1, r.stderr)
    const f = result.failed[0]
    assert.equal(f.state, 'FAILED')
    assert.equal(f.notRun, 0)
    assert.deepEqual(f.failedCells.map((c: { cell: string }) => c.cell).sort(), ['tiny-moe frequency-pruning {"ratio":0.99} brown-agreement', 'tiny-moe frequency-pruning {"ratio":0.99} brown-cloze'])
    for (const c of f.failedCells) assert.match(c.error, /^METHOD_INFEASIBLE \(method frequency-pruning, phase validate\): ratio 0\.99 leaves 1 experts/)
    assert.match(r.stderr, /1 shard\(s\) failed, 2 cell\(s\) failed \(their finished cells are merged\):\n {2}shard 0 \(job \d+_0\): FAILED, exit 1:0; log: \S+shard-\d+_0\.log\n {4}tiny-moe frequency-pruning \{"ratio":0\.99\} brown-\w+: METHOD_INFEASIBLE/)
    assert.ok(fs.existsSync(f.log), 'the failed shard\'s log exists')
    // The two ratio-0 cells are in the store (one run: both tasks of the unpruned model), complete; the report is built.
    assert.ok(result.merged.runs >= 2, JSON.stringify(result.merged))
    const held = runCounts(store)
    assert.equal(held.runs - held.incomplete, 2)
    assert.ok(fs.existsSync(path.join(folder, 'site', 'index.html')), 'the report was built')
  })

  it('runs the array, reports the cancelled shard with its log, resubmits only it, and merges into the single-process result', async () => {
    const child = spawn(process.execPath, [BIN, 'sweep', '--slurm', '--config', config, '--db', db, '--poll-seconds', '0.5', '--json'], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = '', stderr = ''
    child.stdout!.on('data', d => { stdout += d })
    child.stderr!.on('data', d => { stderr += d })
    const exited = new Promise<number | null>(res => child.on('exit', code => res(code)))
    try {
      // Wait for the submission, then for the first array task to run; cancel it a moment later, mid-shard.
      let job: string | undefined
      let victim: number | undefined
      const deadline = Date.now() + 120_000
      while (victim === undefined && Date.now() < deadline && child.exitCode === null) {
        await new Promise(res => setTimeout(res, 200))
        job ??= /as job (\d+)/.exec(stderr)?.[1]
        if (!job) continue
        const running = /^(\d+) RUNNING$/m.exec(squeue(job))
        if (running) victim = Number(running[1])
      }
      assert.ok(job !== undefined && victim !== undefined, `no array task ran: ${stderr}`)
      await new Promise(res => setTimeout(res, 1500))
      const cancel = spawnSync('scancel', [`${job}_${victim}`], { env: { ...process.env, ...env() }, encoding: 'utf8' })
      assert.equal(cancel.status, 0, cancel.stderr)

      assert.equal(await exited, 1, `a cancelled shard makes the sweep fail: ${stderr}`)
      const first = lastJson(stdout)
      assert.deepEqual(first.submitted, [0, 1, 2])
      assert.equal(first.failed.length, 1, stderr)
      assert.equal(first.failed[0].shard, victim)
      assert.equal(first.failed[0].state, 'CANCELLED')
      const log = first.failed[0].log as string
      assert.equal(log, path.join(dir, 'slurm-results', 'logs', `shard-${job}_${victim}.log`))
      assert.ok(fs.existsSync(log), 'the failed shard\'s log exists')
      assert.match(fs.readFileSync(log, 'utf8'), new RegExp(`moe-harness shard ${victim}/3: job ${job}_${victim}`))
      assert.match(stderr, new RegExp(`shard ${victim} \\(job ${job}_${victim}\\): CANCELLED.*log: ${log.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
      assert.deepEqual([...first.complete].sort(), [0, 1, 2].filter(i => i !== victim))
      // The script asked for the memory a task needs (no memory option given), and Slurm ran the tasks with it.
      const mem = /^#SBATCH --mem=(\d+G)$/m.exec(fs.readFileSync(path.join(dir, 'slurm-results', 'sweep.sbatch'), 'utf8'))?.[1]
      assert.ok(mem, 'the script requests memory')
      const shown = spawnSync('scontrol', ['--oneliner', 'show', 'job', `${job}_${first.complete[0]}`], { env: { ...process.env, ...env() }, encoding: 'utf8' })
      assert.match(shown.stdout, new RegExp(`\\bMinMemoryNode=${mem}\\b`), shown.stdout + shown.stderr)
      // The complete shards are merged, and so are the cells the cancelled shard finished; the rest are missing.
      assert.ok(runCounts(db).runs < runCounts(reference).runs)
      assert.ok(first.failed[0].notRun > 0, 'the cancelled shard left cells not run')
      assert.match(stderr, new RegExp(`\\n {4}${first.failed[0].notRun} cell\\(s\\) not run`))
      const victimFile = path.join(dir, 'slurm-results', 'shards', `shard-${victim}-of-3.sqlite`)
      const missing = [...runKeys(victimFile)].filter(k => !runKeys(db).has(k))
      assert.deepEqual(missing, [], 'every run of the cancelled shard\'s file is merged')
      assert.ok(fs.existsSync(path.join(dir, 'site', 'index.html')), 'the report is built although a shard failed')
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }

    // The rerun submits only the cancelled shard; Ctrl-C of the follower leaves that job running.
    const follower = spawn(process.execPath, [BIN, 'sweep', '--slurm', '--config', config, '--db', db, '--poll-seconds', '0.5', '--json'], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] })
    let fout = '', ferr = ''
    follower.stdout!.on('data', d => { fout += d })
    follower.stderr!.on('data', d => { ferr += d })
    const followerExit = new Promise<number | null>(res => follower.on('exit', code => res(code)))
    const until = Date.now() + 60_000
    while (!/as job \d+/.test(ferr) && follower.exitCode === null && Date.now() < until) await new Promise(res => setTimeout(res, 100))
    follower.kill('SIGINT')
    assert.equal(await followerExit, 130, ferr)
    assert.match(ferr, /the array job keeps running on the cluster; rerun the same command to follow it/)
    const second = lastJson(fout)
    const cancelled = [0, 1, 2].filter(i => !second.alreadyComplete.includes(i))
    assert.equal(cancelled.length, 1, 'only the cancelled shard was incomplete')
    assert.deepEqual(second.submitted, cancelled, 'the rerun resubmits only the incomplete shard')
    // Only the cells still missing from the store are planned; the array task is told to skip the rest.
    assert.equal(second.cells.total, 8)
    assert.equal(second.cells.held + second.cells.toRun, 8)
    assert.ok(second.cells.toRun > 0 && second.cells.held > 0, JSON.stringify(second.cells))
    const skip = JSON.parse(fs.readFileSync(path.join(dir, 'slurm-results', 'complete-cells.json'), 'utf8'))
    assert.equal(skip.cells.length, second.cells.held)
    const others = [0, 1, 2].filter(i => i !== cancelled[0])
    const othersSpec = others[1] === others[0] + 1 ? `${others[0]}-${others[1]}` : others.join(',')
    assert.match(ferr, new RegExp(`submitted shards ${cancelled[0]} of 0-2 as job \\d+ \\(shards ${othersSpec} already complete\\)`))

    // Run again: the shard still queued (or just finished) is followed or found complete, never submitted twice.
    const again = runCli(['sweep', '--slurm', '--config', config, '--db', db, '--poll-seconds', '0.5', '--json'], { env: env() })
    assert.equal(again.status, 0, again.stderr)
    const third = lastJson(again.stdout)
    assert.deepEqual(third.submitted, [])
    assert.deepEqual([...third.followed, ...third.alreadyComplete].sort(), [0, 1, 2])
    assert.deepEqual(third.failed, [])
    assert.ok(fs.existsSync(path.join(dir, 'site', 'index.html')), 'the report was built')

    // Every cell exactly once, identical to the single-process sweep.
    assert.deepEqual(runCounts(db), runCounts(reference))
    assert.equal(runCounts(db).duplicates, 0)
    assertSameResults(snapshot(reference), snapshot(db))

    // Once more: nothing to submit, nothing to follow.
    const last = runCli(['sweep', '--slurm', '--config', config, '--db', db, '--json'], { env: env() })
    assert.equal(last.status, 0, last.stderr)
    assert.deepEqual(lastJson(last.stdout).submitted, [])
    assert.match(last.stderr, /all 3 shards already complete/)
    assertSameResults(snapshot(reference), snapshot(db))
  })
})
