// Fresh-user trial 5: `export --csv -` (stdout, as most Unix tools read '-') wrote a file named '-' in
// the current folder. Now '-' is stdout for --csv and --json, the row count goes to stderr, and the
// data equals the file export.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { parseCsv } from '../helpers/csv.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const db = path.join(dir, 'results.sqlite')

describe('export to stdout', () => {
  before(() => {
    const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0, 0.5], tasks: ['brown-agreement'],
      subset: { limit: 6 }, calibration: { sequences: 2, length: 32 }, pool: { workers: 1, threads: 1 }, store: 'results.sqlite',
    })
    const r = runCli(['sweep', '--config', config], { cwd: dir, env })
    assert.equal(r.status, 0, r.stderr)
  })

  it('--csv - and --json - print the export; nothing named - is written', () => {
    const file = runCli(['export', '--db', db, '--csv', path.join(dir, 'out.csv'), '--json', path.join(dir, 'out.json')], { cwd: dir, env })
    assert.equal(file.status, 0, file.stderr)
    assert.equal(file.stdout, 'exported 2 rows\n')
    const csv = runCli(['export', '--db', db, '--csv', '-'], { cwd: dir, env })
    assert.equal(csv.status, 0, csv.stderr)
    assert.equal(csv.stdout, fs.readFileSync(path.join(dir, 'out.csv'), 'utf8'))
    assert.equal(csv.stderr, 'exported 2 rows\n')
    const rows = parseCsv(csv.stdout)
    assert.deepEqual(rows.map(r => [r.ratio, r.task, r.metric, r.status]), [['0', 'brown-agreement', 'acc', 'complete'], ['0.5', 'brown-agreement', 'acc', 'complete']])
    for (const r of rows) assert.ok(Number(r.value) >= 0 && Number(r.value) <= 1)
    const json = runCli(['export', '--db', db, '--json', '-'], { cwd: dir, env })
    assert.equal(json.status, 0, json.stderr)
    assert.deepEqual(JSON.parse(json.stdout), JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8')))
    assert.equal(fs.existsSync(path.join(dir, '-')), false)
  })
})
