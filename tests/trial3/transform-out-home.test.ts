// `transform --out` equal to (or holding) a fresh harness home passed the output check, then the
// method filled the home with calibration statistics and graphs, and the write was refused after all
// the work as "a non-empty folder the harness did not create" (suggesting a folder inside the home).
// It is now refused before any work, and nothing is created.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('transform --out and the harness home', () => {
  const root = tmpDir()
  const model = path.join(root, 'model')
  writeTinyCheckpoint(model, { family: 'mixtral', seed: 8 })
  const transform = (out: string, home: string) =>
    runCli(['transform', '--model', model, '--method', 'frequency-pruning', '--ratio', '0.5', '--out', out], { env: { MOE_HARNESS_HOME: home } })

  it('is refused before any work when it is the home or holds it', () => {
    for (const [out, home, verb] of [[path.join(root, 'h1'), path.join(root, 'h1'), 'is'], [path.join(root, 'h2'), path.join(root, 'h2', 'home'), 'contains']]) {
      const r = transform(out, home)
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, new RegExp(`OUTPUT_UNSAFE.*${verb} the harness home`))
      assert.equal(fs.existsSync(out), false, 'nothing created')
    }
  })

  it('a folder inside the home, or beside it, is fine', () => {
    const home = path.join(root, 'h3')
    const r = transform(path.join(home, 'pruned'), home)
    assert.equal(r.status, 0, r.stderr)
    assert.ok(fs.existsSync(path.join(home, 'pruned', 'config.json')))
    assert.ok(fs.existsSync(path.join(home, 'calibration')))
  })
})
