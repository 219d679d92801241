// `moe-harness score` end to end: the JSON contract and the hook flags, against the reference.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { BIN, lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { referenceLogprobs } from '../reference/forward.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'olmoe'), { family: 'olmoe', dtype: 'BF16', experts: 6, topK: 2, seed: 21, clipQkv: 1.5 })
const ids = [0, 44, 12, 300, 7, 7, 128, 255, 19]
const close = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i])))

describe('moe-harness score', () => {
  it('--ids --json prints tokens and per-token log-probs as the last line', () => {
    const r = runCli(['score', '--model', model.dir, '--ids', ids.join(','), '--json', '--threads', '2'])
    assert.equal(r.status, 0, r.stderr)
    const out = lastJson(r.stdout)
    assert.deepEqual(out.tokens, ids)
    assert.equal(out.logprobs.length, ids.length - 1)
    assert.ok(close(out.logprobs, referenceLogprobs(model.config, model.tensors, ids)) < 1e-4)
    const sum = out.logprobs.reduce((a: number, b: number) => a + b, 0)
    assert.ok(Math.abs(out.sum - sum) < 1e-9)
    assert.ok(Math.abs(out.perplexity - Math.exp(-sum / (ids.length - 1))) < 1e-9)
    assert.match(r.stdout, /perplexity/)
  })

  it('--mask-experts and --neuron-topk drive the hooks end to end', () => {
    const r = runCli(['score', '--model', model.dir, '--ids', ids.join(','), '--json', '--mask-experts', '0:1,4;1:0', '--neuron-topk', '0.5'])
    assert.equal(r.status, 0, r.stderr)
    const out = lastJson(r.stdout)
    const ref = referenceLogprobs(model.config, model.tensors, ids, { disabled: { 0: [1, 4], 1: [0] }, neuronKeep: { 0: 0.5, 1: 0.5 } })
    assert.ok(close(out.logprobs, ref) < 1e-4, `max diff ${close(out.logprobs, ref)}`)
    const plain = referenceLogprobs(model.config, model.tensors, ids)
    assert.ok(close(out.logprobs, plain) > 1e-3, 'the hooks must change the scores')
  })

  it('--text tokenizes with the checkpoint tokenizer', () => {
    const r = runCli(['score', '--model', model.dir, '--text', 'The quick brown fox', '--json'])
    assert.equal(r.status, 0, r.stderr)
    const out = lastJson(r.stdout)
    assert.ok(out.tokens.length >= 3)
    assert.ok(close(out.logprobs, referenceLogprobs(model.config, model.tensors, out.tokens)) < 1e-4)
  })

  it('--help documents the command', () => {
    const r = runCli(['score', '--help'])
    assert.equal(r.status, 0)
    for (const flag of ['--model', '--text', '--ids', '--json', '--mask-experts', '--neuron-topk', '--device']) assert.match(r.stdout, new RegExp(flag))
  })

  it('--text-file (a path, or - for standard input) scores as --text; an unreadable file is FILE_ACCESS', () => {
    const text = 'The quick brown fox jumps over the lazy dog.\nA second line, with ünïcode.'
    const file = path.join(dir, 'page.txt')
    fs.writeFileSync(file, text)
    const direct = lastJson(runCli(['score', '--model', model.dir, '--text', text, '--json']).stdout)
    const fromFile = runCli(['score', '--model', model.dir, '--text-file', file, '--json'])
    assert.equal(fromFile.status, 0, fromFile.stderr)
    assert.deepEqual(lastJson(fromFile.stdout).tokens, direct.tokens)
    assert.deepEqual(lastJson(fromFile.stdout).logprobs, direct.logprobs)
    const stdin = spawnSync(process.execPath, [BIN, 'score', '--model', model.dir, '--text-file', '-', '--json'], { input: text, encoding: 'utf8' })
    assert.equal(stdin.status, 0, stdin.stderr)
    assert.deepEqual(lastJson(stdin.stdout).logprobs, direct.logprobs)
    const missing = runCli(['score', '--model', model.dir, '--text-file', path.join(dir, 'absent.txt')])
    assert.notEqual(missing.status, 0)
    assert.match(missing.stderr, /FILE_ACCESS.*--text-file .*absent\.txt: cannot read it \(ENOENT\)/)
    // A byte-order mark is a file marker, not text; a blank path is named before the model is opened.
    fs.writeFileSync(file, '\uFEFF' + text)
    assert.deepEqual(lastJson(runCli(['score', '--model', model.dir, '--text-file', file, '--json']).stdout).logprobs, direct.logprobs)
    const blank = runCli(['score', '--model', path.join(dir, 'no-such-model'), '--text-file', ''])
    assert.match(blank.stderr, /INVALID_ARGUMENT.*--text-file is empty/)
    const both = runCli(['score', '--model', model.dir, '--text-file', file, '--text', 'x'])
    assert.match(both.stderr, /INVALID_ARGUMENT.*exactly one of --text, --text-file or --ids/)
  })

  it('warns when the text is longer than the context (scored as transformers would, not as lm-eval cuts it)', () => {
    const short = writeTinyCheckpoint(path.join(dir, 'short-context'), { family: 'olmoe', experts: 4, topK: 2, seed: 22 })
    const configFile = path.join(short.dir, 'config.json')
    fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), max_position_embeddings: 8 }))
    const over = runCli(['score', '--model', short.dir, '--ids', ids.join(','), '--json'])
    assert.equal(over.status, 0, over.stderr)
    assert.match(over.stderr, /warning: 9 tokens is longer than the model's context \(max_position_embeddings 8\)/)
    assert.equal(lastJson(over.stdout).logprobs.length, 8)
    const within = runCli(['score', '--model', short.dir, '--ids', ids.slice(0, 8).join(','), '--json'])
    assert.equal(within.status, 0, within.stderr)
    assert.doesNotMatch(within.stderr, /longer than the model's context/)
  })
})
