// Fresh-user trial 5: a config's calibration file (calibration.source: 'cal.txt') was read from the
// current folder, while its models, dataDir and store are relative to the config's folder: a sweep run
// as `sweep --config exp/harness.config.ts` from elsewhere failed with "Calibration source
// <cwd>/cal.txt does not exist". Now it is relative to the config, like the other paths. Likewise
// calibration 'task:<name>' read the task's data from $MOE_HARNESS_DATA or ./data, not from the config's
// dataDir (sweep) or --data-dir (eval) where the same command's tasks found it.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { parseCsv } from '../helpers/csv.ts'
import { writeTaskFixtures } from '../helpers/taskFixtures.ts'

const dir = tmpDir()
const exp = path.join(dir, 'exp')
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

const body = (source: string, store: string) => ({
  models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['reap'], ratios: [0.5], tasks: ['brown-agreement'],
  subset: { limit: 6 }, calibration: { source, sequences: 2, length: 32 }, pool: { workers: 1, threads: 1 }, store,
})

describe("a config's calibration file", () => {
  it('is found next to the config from another folder, and calibrates as the same file given absolute', () => {
    fs.mkdirSync(exp)
    const text = Array.from({ length: 40 }, (_, i) => `Paragraph ${i}: the committee said the report was late, and the jury agreed on ${i} points.`).join('\n\n')
    fs.writeFileSync(path.join(exp, 'cal.txt'), text)
    const relative = writeSweepConfig(path.join(exp, 'harness.config.ts'), body('cal.txt', 'relative.sqlite'))
    const absolute = writeSweepConfig(path.join(exp, 'absolute.config.ts'), body(path.join(exp, 'cal.txt'), 'absolute.sqlite'))
    const a = runCli(['sweep', '--config', relative, '--json'], { cwd: dir, env })
    assert.equal(a.status, 0, a.stderr)
    assert.equal(lastJson(a.stdout).completed, 1)
    const b = runCli(['sweep', '--config', absolute, '--json'], { cwd: dir, env })
    assert.equal(b.status, 0, b.stderr)
    const scores = (db: string) => {
      const r = runCli(['export', '--db', path.join(exp, db), '--csv', '-'], { cwd: dir, env })
      assert.equal(r.status, 0, r.stderr)
      return parseCsv(r.stdout).map(row => [row.variant_id, row.value])
    }
    assert.deepEqual(scores('relative.sqlite'), scores('absolute.sqlite'))
    assert.equal(fs.existsSync(path.join(dir, 'cal.txt')), false)
  })

  it("task:<name> reads the config's dataDir in a sweep and --data-dir in eval", () => {
    const data = path.join(exp, 'data')
    writeTaskFixtures(data)
    const config = writeSweepConfig(path.join(exp, 'task.config.ts'), { ...body('task:arc-easy', 'task.sqlite'), dataDir: 'data', tasks: ['arc-easy'] })
    const sweep = runCli(['sweep', '--config', config, '--json'], { cwd: dir, env })
    assert.equal(sweep.status, 0, sweep.stderr)
    assert.equal(lastJson(sweep.stdout).completed, 1)
    const evalArgs = ['eval', '--model', path.join(ROOT, 'models/tiny-moe'), '--method', 'reap', '--ratio', '0.5', '--calibration', 'task:arc-easy',
      '--calibration-sequences', '2', '--calibration-length', '32', '--tasks', 'arc-easy', '--data-dir', data, '--json']
    const r = runCli(evalArgs, { cwd: dir, env: { ...env, MOE_HARNESS_DATA: path.join(dir, 'no-data') } })
    assert.equal(r.status, 0, r.stderr)
    const out = lastJson(r.stdout)
    assert.match(out.config.calibration.key, /^[0-9a-f]{32}$/)
    const stored = runCli(['export', '--db', path.join(exp, 'task.sqlite'), '--csv', '-'], { cwd: dir, env })
    const acc = parseCsv(stored.stdout).find(row => row.metric === 'acc')!
    assert.equal(Number(acc.value), out.results['arc-easy'].acc, 'the sweep and eval calibrated on the same documents')
  })
})
