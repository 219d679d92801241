// Fresh-user trial 5: MOE_HARNESS_HOME values a user sets by mistake. Found: `MOE_HARNESS_HOME='  '` (a
// stray space in a script or .env) made a folder named '  ' in the current folder and used it; a path to
// a file made every command warn that its caches "cannot be written" without naming the cause. Both now
// stop before the command with CONFIG_INVALID naming the variable and the fix.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const cwd = tmpDir()
const score = (home: string) => runCli(['score', '--model', path.join(import.meta.dirname, '../../models/tiny-moe'), '--text', 'The jury said', '--json'], { cwd, env: { MOE_HARNESS_HOME: home } })

describe('MOE_HARNESS_HOME values', () => {
  it('spaces around the path are refused, and no folder is made', () => {
    for (const home of ['  ', ` ${path.join(cwd, 'home')}`]) {
      const r = score(home)
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, new RegExp(`^error \\[CONFIG_INVALID\\]: MOE_HARNESS_HOME is ${JSON.stringify(home).replace(/[/]/g, '\\/')}, with spaces around the path`))
    }
    assert.deepEqual(fs.readdirSync(cwd), [])
  })

  it('a file is refused, unchanged; a folder path works', () => {
    const file = path.join(cwd, 'notes.txt')
    fs.writeFileSync(file, 'mine')
    const r = score(file)
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /^error \[CONFIG_INVALID\]: MOE_HARNESS_HOME is .*notes\.txt, which is a file, not a folder/)
    assert.doesNotMatch(r.stderr, /cannot be written/)
    assert.equal(fs.readFileSync(file, 'utf8'), 'mine')
    const ok = score(path.join(cwd, 'home'))
    assert.equal(ok.status, 0, ok.stderr)
    assert.equal(JSON.parse(ok.stdout.trim().split('\n').at(-1)!).logprobs.length, 2)
    assert.ok(fs.statSync(path.join(cwd, 'home', 'graphs')).isDirectory())
  })
})
