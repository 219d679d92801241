// Fresh-user trial 4, on a real single-node Slurm (tests/cluster/localSlurm.ts): the array tasks run in
// the config's folder, so without $MOE_HARNESS_HOME they cached calibration and prepared variants in
// <config folder>/.harness while the submitting command (and a later local sweep or `moe-harness
// cache` from the same folder) used ./.harness: a second cache, calibrated again. The script now pins
// the submitting command's resolved home. Fails (does not skip) without Slurm, like tests/cluster.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { missingSlurmBinaries, startLocalSlurm, type LocalSlurm } from '../cluster/localSlurm.ts'

const dir = tmpDir()
const submitFrom = path.join(dir, 'work')
const experiment = path.join(dir, 'experiment')
fs.mkdirSync(submitFrom)
fs.mkdirSync(experiment)
fs.writeFileSync(path.join(experiment, 'harness.config.ts'), `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0, 0.5], tasks: ['brown-cloze'],
  subset: { limit: 2 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 }, store: 'results.sqlite',
  cluster: { arraySize: 2, cpusPerTask: 1 },
})})\n`)

describe('sweep --slurm and the harness home', () => {
  let slurm: LocalSlurm | undefined
  const missing = missingSlurmBinaries()
  before(() => { if (missing.length === 0) slurm = startLocalSlurm({ cpus: 2 }) })
  after(() => slurm?.stop())

  it('the array tasks cache in the home of the submitting command, not in the config folder', () => {
    assert.ok(slurm, `Slurm is not installed (missing: ${missing.join(', ')}): apt-get install -y slurm-wlm munge (.ci/run does this).`)
    // MOE_HARNESS_HOME='' counts as unset: the home is ./.harness of the submitting folder.
    const env = { ...slurm.env, MOE_HARNESS_HOME: '' }
    const r = runCli(['sweep', '--slurm', '--config', '../experiment/harness.config.ts', '--poll-seconds', '0.5', '--json'], { cwd: submitFrom, env })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(lastJson(r.stdout).failed, [])
    const script = fs.readFileSync(path.join(experiment, 'slurm-results', 'sweep.sbatch'), 'utf8')
    assert.match(script, new RegExp(`\\nexport MOE_HARNESS_HOME=${path.join(submitFrom, '.harness').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`))
    const variants = path.join(submitFrom, '.harness', 'variants')
    assert.ok(fs.existsSync(variants) && fs.readdirSync(variants).length > 0, 'the shards prepared their variants in the submitting home')
    assert.equal(fs.existsSync(path.join(experiment, '.harness')), false, 'no second cache in the config folder')
    // A local sweep from the submitting folder finds the shards' calibration in the same home.
    const local = runCli(['sweep', '--config', '../experiment/harness.config.ts', '--db', 'local.sqlite'], { cwd: submitFrom, env: { MOE_HARNESS_HOME: '' } })
    assert.equal(local.status, 0, local.stderr)
    assert.match(local.stderr, /calibration for tiny: cached/)
  })
})
