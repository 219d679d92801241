// Fresh-user trial 5: README's `--model models/tiny-moe`, run from another folder than the project, was
// answered as a Hugging Face Hub id ("run `huggingface-cli download models/tiny-moe`"), though the
// harness project holds that folder. Now the error names the project's folder.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const cwd = tmpDir()
const env = { MOE_HARNESS_HOME: path.join(cwd, 'home') }

describe('a relative --model from another folder', () => {
  it('names the project folder that holds it', () => {
    const r = runCli(['score', '--model', 'models/tiny-moe', '--text', 'The jury said'], { cwd, env })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, new RegExp(`error \\[CHECKPOINT_NOT_FOUND\\]: Model folder models/tiny-moe does not exist in the current folder \\(${path.join(cwd, 'models/tiny-moe')}\\); .*pass --model ${path.join(ROOT, 'models/tiny-moe')}`))
    assert.doesNotMatch(r.stderr, /huggingface-cli/)
  })

  it('the path it names works; a Hub id the project does not hold keeps the download hint', () => {
    const ok = runCli(['score', '--model', path.join(ROOT, 'models/tiny-moe'), '--text', 'The jury said', '--json'], { cwd, env })
    assert.equal(ok.status, 0, ok.stderr)
    assert.equal(JSON.parse(ok.stdout.trim().split('\n').at(-1)!).logprobs.length, 2)
    const hub = runCli(['score', '--model', 'allenai/OLMoE-1B-7B-0924', '--text', 'x'], { cwd, env: { ...env, HF_HUB_CACHE: path.join(cwd, 'hub') } })
    assert.equal(hub.status, 1)
    assert.match(hub.stderr, /huggingface-cli download allenai\/OLMoE-1B-7B-0924 --local-dir DIR/)
  })
})
