// Fresh-user trial 7: an empty or blank output or store path (`--out "$OUT"` with OUT unset) is named
// as such. Found: `export --json " "` wrote a file named ' ' in the current folder; `--out ""` was
// refused as "--out  is the current folder"; `report --db ""` said "  is a folder, not a database file".
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const db = path.join(dir, 'results.sqlite')
new ResultsStore(db).close()

describe('empty and blank paths', () => {
  const cases: [string[], RegExp][] = [
    [['export', '--db', db, '--json', ' '], /error \[OUTPUT_UNSAFE\]: --json is blank\. Nothing was written; pass a file path \(e\.g\. results\.json\)\./],
    [['export', '--db', db, '--csv', '-', '--json', ''], /error \[OUTPUT_UNSAFE\]: --json is empty\. Nothing was written/],
    [['report', '--db', db, '--out', ''], /error \[OUTPUT_UNSAFE\]: --out is empty\. Nothing was written; pass a new folder for the report output\./],
    [['merge', db, '--out', ''], /error \[OUTPUT_UNSAFE\]: --out is empty\. Nothing was written; pass a file path \(e\.g\. merged\.sqlite\)\./],
    [['report', '--db', '', '--out', 'site'], /error \[STORE_FAILED\]: --db is empty; pass --db with the results database's file path/],
    [['export', '--db', ' ', '--csv', 'x.csv'], /error \[STORE_FAILED\]: --db is blank; pass --db with the results database's file path/],
  ]
  for (const [args, message] of cases) {
    it(`${args.map(a => JSON.stringify(a)).join(' ')}: refused, nothing written in the current folder`, () => {
      const cwd = fs.mkdtempSync(path.join(dir, 'cwd-'))
      const r = runCli(args, { cwd })
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, message)
      assert.deepEqual(fs.readdirSync(cwd), [])
    })
  }
})
