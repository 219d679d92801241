// Review 8 (issue 10 §6, --device cuda on a CPU-only machine): the refusal told the user to run
// `node node_modules/onnxruntime-node/script/install.js`, a path relative to the project: run from the
// folder of one's experiments (where a config lives), that command is "Cannot find module". It now names
// the install script of the onnxruntime-node the harness loads, by its absolute path.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 4 })

describe('--device cuda without the CUDA provider', { skip: fs.existsSync(path.join(import.meta.dirname, '../../node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so')) && 'the CUDA provider is installed here' }, () => {
  it('names the install script by an absolute path that exists, from any folder', () => {
    const r = runCli(['score', '--model', model.dir, '--text', 'The quick brown fox', '--device', 'cuda'], { cwd: dir, env: { MOE_HARNESS_HOME: path.join(dir, 'home') } })
    assert.equal(r.status, 1, r.stderr)
    const m = /error \[DEVICE_UNAVAILABLE\]: The CUDA execution provider is not installed: .*`ONNXRUNTIME_NODE_INSTALL=cuda12 node (\S+)`/.exec(r.stderr)
    assert.ok(m, r.stderr)
    assert.ok(path.isAbsolute(m[1]!), m[1])
    assert.ok(fs.existsSync(m[1]!), `${m[1]} exists`)
    assert.equal(path.basename(m[1]!), 'install.js')
  })
})
