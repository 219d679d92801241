// Review 8: MOE_HARNESS_HOME='~/scratch/harness' (quoted in a Slurm script or a .env file, so the shell
// did not expand '~') made a folder literally named '~' in the current folder and filled it with graphs
// and variants; the classic cleanup of such a folder, `rm -rf ~`, deletes the user's home. The harness
// now refuses it before any command, naming the expanded path to set instead. HF_HOME users expect '~'
// to work; a refusal with the path is explicit and never writes a '~' folder.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 4 })

describe("MOE_HARNESS_HOME starting with '~'", () => {
  it('is CONFIG_INVALID naming the path to set, and writes no folder named ~', () => {
    for (const value of ['~/scratch/harness', '~']) {
      const r = runCli(['score', '--model', model.dir, '--text', 'The quick brown fox'], { cwd: dir, env: { MOE_HARNESS_HOME: value } })
      assert.equal(r.status, 1, r.stderr)
      const expanded = path.join(os.homedir(), value.slice(1))
      assert.equal(r.stderr.trim(), `error [CONFIG_INVALID]: MOE_HARNESS_HOME is ${JSON.stringify(value)}: the shell did not expand '~' (the value was quoted), so it would be a folder named '~' in ${dir}; set it to ${expanded} (or unset it for ./.harness).`)
      assert.equal(fs.existsSync(path.join(dir, '~')), false)
    }
  })

  it('a path that only contains ~ further on is a path like any other', () => {
    const home = path.join(dir, 'a~b')
    const r = runCli(['score', '--model', model.dir, '--text', 'The quick brown fox'], { cwd: dir, env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 0, r.stderr)
    assert.ok(fs.existsSync(path.join(home, 'graphs')))
  })
})
