// Fresh-user trial 5: task and method plugins are run through tsx, which does not check types, so a
// misspelt field must be caught when the plugin loads. Found: a task of kind 'multiple-choice' failed
// as its first record's error ("Cannot read properties of undefined (reading 'context')"), metrics
// ['acc', 'acc_nrom'] scored acc and dropped the other silently, a primaryMetric the task does not
// compute was reported as its primary metric, a task without a version was scored with `undefined`
// in its run key, and a method parameter without a description was listed as 'undefined'.
// Each case is a real CLI process on a copy of the project (tasks/ and methods/ of the shared tree are never touched).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { lastJson, ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { copyProject } from '../helpers/projectCopy.ts'

const dir = tmpDir()
const project = path.join(dir, 'project')
const home = path.join(dir, 'home')

const GOOD_TASK = [
  "import { defineTask } from '../src/index.ts'",
  'export default defineTask<{ q: string; choices: string[]; answer: number }>({',
  "  name: 'NAME',",
  '  version: 1,',
  "  description: 'Small sums.',",
  "  kind: 'multiple_choice',",
  "  data: { files: ['sums/test.jsonl'], howToGet: 'Write sums/test.jsonl.' },",
  '  prompt: doc => ({ context: doc.q, choices: doc.choices.map(c => ` ${c}`), gold: doc.answer }),',
  "  metrics: ['acc', 'acc_norm'],",
  "  primaryMetric: 'acc',",
  '})',
  '',
].join('\n')

function task(name: string, from?: string, to?: string): void {
  const text = GOOD_TASK.replace('NAME', name)
  if (from !== undefined) assert.ok(text.includes(from), `the template holds ${from}`)
  fs.writeFileSync(path.join(project, 'tasks', `${name}.ts`), from === undefined ? text : text.replace(from, to!))
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [path.join(project, 'bin/moe-harness.mjs'), ...args],
    { cwd: project, encoding: 'utf8', env: { ...process.env, MOE_HARNESS_HOME: home, MOE_HARNESS_DATA: path.join(project, 'data') } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

const evalTask = (name: string) => cli(['eval', '--model', path.join(project, 'models/tiny-moe'), '--tasks', name, '--limit', '6', '--json'])

describe('plugin shapes are checked when a plugin loads', () => {
  before(() => {
    copyProject(project, ['src', 'methods', 'bin', 'tasks', 'package.json'], { model: true })
    fs.mkdirSync(path.join(project, 'data/sums'), { recursive: true })
    const lines = []
    for (let i = 0; i < 6; i++) lines.push(JSON.stringify({ q: `${i} plus ${i} is`, choices: [String(2 * i), String(2 * i + 1), String(i * i + 7)], answer: 0 }))
    fs.writeFileSync(path.join(project, 'data/sums/test.jsonl'), lines.join('\n') + '\n')
    task('sums')
    task('kind-typo', "kind: 'multiple_choice'", "kind: 'multiple-choice'")
    task('metric-typo', "metrics: ['acc', 'acc_norm']", "metrics: ['acc', 'acc_nrom']")
    task('metric-of-other-kind', "metrics: ['acc', 'acc_norm']", "metrics: ['acc', 'word_perplexity']")
    task('primary-not-computed', "primaryMetric: 'acc'", "primaryMetric: 'acc_mutual_info'")
    task('no-version', '  version: 1,\n', '')
  })

  const cases: [name: string, message: RegExp][] = [
    ['kind-typo', /tasks\/kind-typo\.ts: kind "multiple-choice" is not one of multiple_choice, multiple_input, loglikelihood, rolling \(did you mean 'multiple_choice'\?\)/],
    ['metric-typo', /tasks\/metric-typo\.ts: metric "acc_nrom" is not computed for kind 'multiple_choice' \(did you mean [^)]*'acc_norm'/],
    ['metric-of-other-kind', /tasks\/metric-of-other-kind\.ts: metric "word_perplexity" is not computed for kind 'multiple_choice'.*known: acc, acc_norm, acc_bytes, acc_mutual_info, exact_match/],
    ['primary-not-computed', /tasks\/primary-not-computed\.ts: primaryMetric "acc_mutual_info" is not one of its metrics \(acc, acc_norm\)/],
    ['no-version', /tasks\/no-version\.ts: version must be a positive integer .*got undefined/],
  ]
  for (const [name, message] of cases) {
    it(`task ${name}: error [TASK_INVALID] naming the task file, before any scoring`, () => {
      const r = evalTask(name)
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, /error \[TASK_INVALID\]/)
      assert.match(r.stderr, message)
      assert.doesNotMatch(r.stderr, /record at|\n\s+at /, 'blames the definition, not a record; no stack trace')
      assert.equal(r.stdout.trim(), '', 'no results table')
    })
  }

  it('the correct task in the same project scores both its metrics (the cases fail for their own reason)', () => {
    const r = evalTask('sums')
    assert.equal(r.status, 0, r.stderr)
    const out = lastJson(r.stdout)
    assert.equal(out.results.sums.primary_metric, 'acc')
    assert.equal(out.versions.sums, 1)
    assert.equal(out['n-samples'].sums.effective, 6)
    for (const m of ['acc', 'acc_norm']) assert.ok(out.results.sums[m] >= 0 && out.results.sums[m] <= 1, `${m} = ${out.results.sums[m]}`)
  })

  it('new-method with the name of an existing method says what to do, and writes nothing', () => {
    const before = fs.readFileSync(path.join(project, 'methods', 'reap.ts'), 'utf8')
    const r = cli(['new-method', 'reap'])
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[INVALID_ARGUMENT\]: methods\/reap\.ts already exists \(nothing was written\); choose another name, or edit that file\./)
    assert.equal(fs.readFileSync(path.join(project, 'methods', 'reap.ts'), 'utf8'), before)
    assert.equal(fs.existsSync(path.join(project, 'tests', 'methods', 'reap.test.ts')), false)
  })

  it('a method parameter without a description is METHOD_INVALID naming the file and the parameter', () => {
    fs.writeFileSync(path.join(project, 'methods', 'no-param-text.ts'), [
      "import { checkUniformRemoval, defineMethod, p, removeLowestPerLayer } from '../src/index.ts'",
      'export default defineMethod({',
      "  name: 'no-param-text',",
      "  description: 'Random removal.',",
      "  family: 'expert-pruning',",
      '  params: { ratio: p.ratio(), strength: (p.number as any)({ default: 1, min: 0, max: 5 }) },',
      '  needs: [],',
      '  validate: (params, layout) => checkUniformRemoval(params.ratio, layout),',
      '  apply({ params, layout, experts, rng }) {',
      '    return { achievedRatio: removeLowestPerLayer(layout, experts, params.ratio, layout.layers.map(l => Array.from({ length: l.experts }, () => rng()))) }',
      '  },',
      '})',
      '',
    ].join('\n'))
    try {
      const r = cli(['methods'])
      assert.equal(r.status, 1, r.stdout)
      assert.match(r.stderr, /error \[METHOD_INVALID\]: methods\/no-param-text\.ts: parameter 'strength' has no description/)
      assert.doesNotMatch(r.stdout, /undefined/)
    } finally {
      fs.rmSync(path.join(project, 'methods', 'no-param-text.ts'))
    }
    const ok = cli(['methods', '--json'])
    assert.equal(ok.status, 0, ok.stderr)
    const listed = JSON.parse(ok.stdout) as { name: string; params: Record<string, { description: string }> }[]
    assert.ok(listed.length >= 10)
    for (const m of listed) for (const [k, spec] of Object.entries(m.params)) assert.ok(spec.description.trim().length > 0, `${m.name}.${k}`)
  })
})
