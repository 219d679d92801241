// `methods`, `new-method`, `transform` and `eval --method` from the command line.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { lastJson, ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'qwen2_moe', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 81 })
const calib = ['--calibration-sequences', '4', '--calibration-length', '32']

describe('method commands', () => {
  it('methods lists every method with its parameters', () => {
    const r = runCli(['methods', '--json'])
    assert.equal(r.status, 0, r.stderr)
    const list = JSON.parse(r.stdout)
    const names = list.map((m: { name: string }) => m.name)
    for (const n of ['frequency-pruning', 'reap', 'ean', 'naee', 'novice-replacement', 'expert-merging', 'magnitude-pruning', 'neuron-top-k']) assert.ok(names.includes(n), n)
    assert.ok(list.every((m: { params: Record<string, unknown> }) => 'ratio' in m.params))
    assert.match(runCli(['methods']).stdout, /--param algorithm=hc-smoe \{m-smoe\|hc-smoe\}/)
  })

  it('new-method scaffolds a working method and its test', () => {
    const name = 'zz-scaffold-check'
    const file = path.join(ROOT, 'methods', `${name}.ts`)
    const test = path.join(ROOT, 'tests', 'methods', `${name}.test.ts`)
    after(() => { fs.rmSync(file, { force: true }); fs.rmSync(test, { force: true }) })
    const r = runCli(['new-method', name])
    assert.equal(r.status, 0, r.stderr)
    assert.ok(fs.existsSync(file) && fs.existsSync(test))
    const again = runCli(['new-method', name])
    assert.notEqual(again.status, 0)
    assert.match(again.stderr, /already exists/)
    const ev = runCli(['eval', '--model', model.dir, '--tasks', 'brown-agreement', '--limit', '10', '--method', name, '--ratio', '0.5', '--json', ...calib], { env })
    assert.equal(ev.status, 0, ev.stderr)
    assert.equal(lastJson(ev.stdout).config.achieved_ratio, 0.5)
    assert.match(runCli(['new-method', 'Bad_Name']).stderr, /kebab-case/)
  })

  it('eval --method reports the variant and fails fast on impossible requests', () => {
    const ok = runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--limit', '10', '--method', 'reap', '--ratio', '0.5', '--json', ...calib], { env })
    assert.equal(ok.status, 0, ok.stderr)
    const out = lastJson(ok.stdout)
    assert.equal(out.config.method, 'reap')
    assert.equal(out.config.layers.length, 2)
    assert.equal(out.config.layers[0].removed.length, 3)
    const bad = runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--method', 'reap', '--ratio', '0.9', ...calib], { env: { MOE_HARNESS_HOME: path.join(dir, 'untouched') } })
    assert.notEqual(bad.status, 0)
    assert.match(bad.stderr, /error \[METHOD_INFEASIBLE\] \(method reap, phase validate\): .*top-2/)
    assert.equal(fs.existsSync(path.join(dir, 'untouched')), false, 'nothing was calibrated')
    assert.match(runCli(['eval', '--model', model.dir, '--method', 'reaap']).stderr, /Unknown method 'reaap'\. Did you mean: reap/)
    assert.match(runCli(['eval', '--model', model.dir, '--method', 'reap', '--param', 'renormalize=true']).stderr, /Did you mean: renormalizeRouterWeights/)
  })

  it('transform writes an HF checkpoint that reloads with identical scores, or the harness format when it must', () => {
    const out = path.join(dir, 'pruned')
    const t = runCli(['transform', '--model', model.dir, '--method', 'frequency-pruning', '--ratio', '0.5', '--out', out, '--json', ...calib], { env })
    assert.equal(t.status, 0, t.stderr)
    assert.equal(lastJson(t.stdout).format, 'hf')
    assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).num_experts, 3)
    assert.equal(fs.existsSync(path.join(out, 'moe_harness_variant.json')), false)
    const viaMethod = lastJson(runCli(['eval', '--model', model.dir, '--tasks', 'brown-agreement', '--limit', '20', '--method', 'frequency-pruning', '--ratio', '0.5', '--json', ...calib], { env }).stdout)
    const viaExport = lastJson(runCli(['eval', '--model', out, '--tasks', 'brown-agreement', '--limit', '20', '--json']).stdout)
    assert.equal(viaExport.results['brown-agreement'].acc, viaMethod.results['brown-agreement'].acc)
    const nov = runCli(['transform', '--model', model.dir, '--method', 'novice-replacement', '--ratio', '0.5', '--out', path.join(dir, 'nov'), '--format', 'hf', ...calib], { env })
    assert.notEqual(nov.status, 0)
    assert.match(nov.stderr, /VARIANT_INVALID.*--format harness/)
    assert.equal(fs.existsSync(path.join(dir, 'nov')), false, 'nothing half-written')
  })
})
