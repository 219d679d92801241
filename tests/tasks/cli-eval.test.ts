// `moe-harness eval` and `moe-harness tasks` end to end.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTaskFixtures } from '../helpers/taskFixtures.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const dataDir = path.join(dir, 'data')
writeTaskFixtures(dataDir)
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'qwen3_moe', experts: 5, topK: 2, seed: 41 })

describe('moe-harness eval', () => {
  it('prints an lm-eval style table and a JSON last line with metrics and stderr', () => {
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze,arc_easy,wikitext', '--limit', '8', '--data-dir', dataDir, '--json'])
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /\| Tasks\s+\| Version/)
    assert.match(r.stdout, /brown-cloze/)
    const out = lastJson(r.stdout)
    const cloze = out.results['brown-cloze']
    assert.ok(cloze.acc >= 0 && cloze.acc <= 1)
    assert.ok(cloze.acc_stderr > 0)
    assert.ok('acc_norm' in cloze)
    assert.ok(out.results['arc-easy'].acc_norm >= 0)
    assert.equal(out['n-samples']['brown-cloze'].effective, 8)
    assert.equal(out['n-samples']['brown-cloze'].original, 1500)
    assert.equal(out['n-samples']['arc-easy'].effective, 6)
    assert.ok(out.results.wikitext.word_perplexity > 1)
    assert.equal(out.results.wikitext.word_perplexity_stderr, null)
    assert.equal(out.versions['brown-cloze'], 1)
  })

  it('the same subset gives the same numbers with hooks applied through the flags', () => {
    const args = ['eval', '--model', model.dir, '--tasks', 'brown-agreement', '--sample', '30', '--json', '--mask-experts', '0:1', '--neuron-topk', '0.5']
    const a = lastJson(runCli([...args, '--batch-tokens', '128']).stdout)
    const b = lastJson(runCli([...args, '--batch-tokens', '4096', '--threads', '1']).stdout)
    assert.equal(a.results['brown-agreement'].acc, b.results['brown-agreement'].acc)
    const plain = lastJson(runCli(['eval', '--model', model.dir, '--tasks', 'brown-agreement', '--sample', '30', '--json']).stdout)
    assert.equal(plain['n-samples']['brown-agreement'].effective, 30)
  })

  it('a task whose data is missing says which file to put where, before any scoring', () => {
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'boolq', '--data-dir', dataDir])
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /error \[TASK_DATA_MISSING\]/)
    assert.match(r.stderr, /aps\/super_glue \(config boolq\)/)
    assert.match(r.stderr, new RegExp(`${dataDir}/boolq/validation.jsonl`))
  })

  it('unknown tasks suggest the closest names', () => {
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-clze'])
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /Unknown task 'brown-clze'\. Did you mean: brown-cloze/)
  })

  it('moe-harness tasks lists item counts and missing data', () => {
    const r = runCli(['tasks', '--data-dir', dataDir, '--json'])
    assert.equal(r.status, 0, r.stderr)
    const rows = JSON.parse(r.stdout)
    const byName = Object.fromEntries(rows.map((t: any) => [t.name, t]))
    assert.equal(byName['brown-cloze'].items, 1500)
    assert.equal(byName['arc-easy'].items, 6)
    assert.equal(byName.boolq.items, null)
    for (const name of ['brown-cloze', 'brown-agreement', 'brown-next-sentence', 'brown-perplexity', 'nlp-corpus-perplexity']) assert.ok(byName[name].items >= 1000, name)
  })
})
