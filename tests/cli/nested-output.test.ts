// Outputs inside another harness output folder are refused (they would make that folder
// un-rewritable: "holds files moe-harness did not write").
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('outputs nested in a harness output folder', () => {
  const dir = tmpDir()
  const db = path.join(dir, 'results.sqlite')
  new ResultsStore(db).close()
  const site = path.join(dir, 'site')

  it('report --out site works, then report/export/merge into site/... are refused, and site stays rewritable', () => {
    const first = runCli(['report', '--db', db, '--out', site])
    assert.equal(first.status, 0, first.stderr)
    assert.ok(fs.existsSync(path.join(site, '.moe-harness-output.json')))
    const cases: [string[], string][] = [
      [['report', '--db', db, '--out', path.join(site, 'inner')], 'inner'],
      [['export', '--db', db, '--csv', path.join(site, 'x.csv')], 'x.csv'],
      [['export', '--db', db, '--json', path.join(site, 'deep', 'x.json')], 'x.json'],
      [['merge', db, '--out', path.join(site, 'm.sqlite')], 'm.sqlite'],
    ]
    for (const [args, name] of cases) {
      const r = runCli(args)
      assert.notEqual(r.status, 0, `${args.join(' ')} was accepted`)
      assert.match(r.stderr, /OUTPUT_UNSAFE/, r.stderr)
      assert.match(r.stderr, new RegExp(`is inside .*site, a report output folder of moe-harness`), r.stderr)
      assert.ok(r.stderr.includes(path.join(dir, name)), `the fix names a path beside the folder: ${r.stderr}`)
    }
    assert.deepEqual(fs.readdirSync(site).filter(f => /inner|x\.csv|deep|m\.sqlite/.test(f)), [])
    const again = runCli(['report', '--db', db, '--out', site])
    assert.equal(again.status, 0, again.stderr)
  })

  it('a file beside the output folder (not inside) is fine', () => {
    const r = runCli(['export', '--db', db, '--csv', path.join(dir, 'x.csv')])
    assert.equal(r.status, 0, r.stderr)
    assert.ok(fs.existsSync(path.join(dir, 'x.csv')))
  })
})
