// A method edit reverted: the sweep after the revert finds the earlier variant's cells complete and
// scores nothing, yet that variant is what the plugin produces again, so the leaderboard must show it,
// not the variant of the reverted-away edit (it did: "newest" was the variant made last). Real sweeps of
// the tiny model through the CLI of a temporary copy of the project (the test edits that copy's method
// file, never this tree's), a real `report`, and `merge` of the stores of two "machines" in both orders.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import type { LeaderboardData } from '../../src/report/leaderboardData.ts'
import { summarize } from '../../src/report/leaderboardData.ts'
import type { ReadyVariant } from '../../src/store/reads.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { ROOT } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { copyProject } from '../helpers/projectCopy.ts'

const dir = tmpDir()
const project = path.join(dir, 'project')
copyProject(project, ['bin', 'src', 'methods', 'tasks', 'reports', 'package.json', 'tsconfig.json'])
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 73 })
const env = { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') }
// A perplexity task: its scores are continuous, so the two variants' numbers differ (16 documents' accuracies may not).
const TASKS = ['brown-cloze', 'brown-perplexity']
const METHOD_FILE = path.join(project, 'methods', 'frequency-pruning.ts')
const config = path.join(dir, 'sweep.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(project, 'src/index.ts'))}
export default defineConfig(${JSON.stringify({ models: { tiny: 'model' }, methods: ['frequency-pruning'], ratios: [0.25], tasks: TASKS, calibration: { sequences: 4, length: 32 }, subset: { sample: 16 }, pool: { workers: 1, threads: 1 } }, null, 2)})
`)

function cli(args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(project, 'bin', 'moe-harness.mjs'), ...args], { cwd: dir, encoding: 'utf8', env, timeout: 300_000 })
  assert.equal(r.status, 0, `${args.join(' ')}\n${r.stderr}`)
  return { stdout: r.stdout, stderr: r.stderr }
}

/** The sweep's closing line ("N cells scored, M already complete, ..."). */
const sweep = (db: string) => cli(['sweep', '--config', config, '--db', db]).stderr

/** The store's ready frequency-pruning variants at 0.25, by id, with their primary metric per task, and how many runs it holds. */
function stored(db: string): { variants: Map<string, { variant: ReadyVariant; scores: Record<string, number> }>; runs: number } {
  const store = new ResultsStore(db, { readonly: true })
  try {
    const [model] = store.storedModels()
    const primary = new Map(store.storedTasks().map(t => [t.name, t.primaryMetric]))
    const runs = store.completeRuns(model.id)
    const variants = store.storedVariants(model.id).filter((v): v is ReadyVariant => v.status === 'ready' && v.method === 'frequency-pruning' && v.ratio === 0.25)
    return {
      runs: runs.length,
      variants: new Map(variants.map(variant => [variant.variantId, {
        variant,
        scores: Object.fromEntries(runs.filter(r => r.contentHash === variant.contentHash).map(r => [r.task, store.runMetric(r.runId, primary.get(r.task)!)!.value])),
      }])),
    }
  } finally {
    store.close()
  }
}

/** The leaderboard row of frequency-pruning at 0.25 (there must be one) and the superseded variants' ids, as `data` has them. */
function rowOf(data: LeaderboardData) {
  const [model] = data.models
  const rows = model.rows.filter(r => r.method === 'frequency-pruning' && r.ratio === 0.25)
  assert.equal(rows.length, 1)
  return { row: rows[0], scores: Object.fromEntries(Object.entries(rows[0].cells).map(([k, c]) => [k, c.value])), superseded: model.superseded.map(s => s.variantId) }
}

function summary(db: string): LeaderboardData {
  const store = new ResultsStore(db, { readonly: true })
  try {
    return summarize(store, 'x')
  } finally {
    store.close()
  }
}

describe('a reverted method edit shows the variant the plugin produces again', () => {
  const db = path.join(dir, 'results.sqlite')
  const first = sweep(db)
  const [idA] = stored(db).variants.keys()
  // Edited to remove the most used experts instead: another file hash (another variant id) and other edits.
  const original = fs.readFileSync(METHOD_FILE, 'utf8')
  assert.equal(original.split("params.score === 'count' ? r.count[e]").length, 2, 'the edit applies to methods/frequency-pruning.ts')
  fs.writeFileSync(METHOD_FILE, `${original.replace("params.score === 'count' ? r.count[e]", "params.score === 'count' ? -r.count[e]")}\n// edited\n`)
  const edited = sweep(db)
  const afterEdit = stored(db)
  const idB = [...afterEdit.variants.keys()].find(id => id !== idA)!
  // The store as the machine that kept the edit has it: B used last.
  const machineB = path.join(dir, 'machine-b.sqlite')
  fs.copyFileSync(db, machineB)
  // git checkout of the method file: the plugin produces A again.
  fs.writeFileSync(METHOD_FILE, original)
  // `sweep --slurm` on a copy: every cell is held complete, so nothing is submitted (no Slurm call) and
  // no shard plans A; the main store still records that the sweep used it.
  const slurmDb = path.join(dir, 'slurm', 'results.sqlite')
  fs.mkdirSync(path.dirname(slurmDb))
  fs.copyFileSync(machineB, slurmDb)
  const slurm = cli(['sweep', '--config', config, '--db', slurmDb, '--slurm']).stderr
  const reverted = sweep(db)
  const afterRevert = stored(db)
  const A = afterRevert.variants.get(idA)!, B = afterRevert.variants.get(idB)!
  const site = path.join(dir, 'site')
  cli(['report', '--db', db, '--out', site])
  const data = JSON.parse(fs.readFileSync(path.join(site, 'leaderboard.json'), 'utf8')) as LeaderboardData

  it('the fixture: the edit made variant B (other edits, later); the revert scored nothing and recorded no variant', () => {
    assert.match(first, /sweep: 2 cells scored, 0 already complete, 0 failed/)
    assert.match(edited, /sweep: 2 cells scored, 0 already complete, 0 failed/)
    assert.match(reverted, /sweep: 0 cells scored, 2 already complete, 0 failed/)
    assert.equal(afterEdit.variants.size, 2)
    assert.ok(idB)
    assert.notEqual(A.variant.contentHash, B.variant.contentHash)
    assert.ok(A.variant.createdAt < B.variant.createdAt)
    assert.deepEqual([afterRevert.variants.size, afterRevert.runs], [2, afterEdit.runs])
    assert.deepEqual(Object.keys(A.scores).sort(), [...TASKS].sort())
    assert.notDeepEqual(A.scores, B.scores, 'the two variants score differently, so the numbers shown tell them apart')
    // Nothing about A changed but when it was last used: after B was made.
    assert.equal(A.variant.createdAt, afterEdit.variants.get(idA)!.variant.createdAt)
    assert.ok(A.variant.lastUsedAt > B.variant.lastUsedAt, `${A.variant.lastUsedAt} > ${B.variant.lastUsedAt}`)
    assert.equal(B.variant.lastUsedAt, afterEdit.variants.get(idB)!.variant.lastUsedAt)
  })

  it("the leaderboard's row is A with A's scores; B is superseded by it", () => {
    const { row, scores, superseded } = rowOf(data)
    assert.equal(row.variantId, idA)
    assert.deepEqual(scores, A.scores)
    assert.deepEqual(superseded, [idB])
    assert.equal(row.superseded, 1)
    assert.deepEqual([row.createdAt, row.lastUsedAt], [A.variant.createdAt, A.variant.lastUsedAt])
    const s = data.models[0].superseded[0]
    assert.deepEqual([s.createdAt, s.lastUsedAt, s.supersededBy, s.supersededAt], [B.variant.createdAt, B.variant.lastUsedAt, row.slug, A.variant.lastUsedAt])
    assert.deepEqual(s.cells['brown-cloze'].value, B.scores['brown-cloze'])
  })

  it("the site: leaderboard.csv has A's id, the run page is A's, the method page lists B as superseded", () => {
    const csv = fs.readFileSync(path.join(site, 'leaderboard.csv'), 'utf8')
    assert.ok(csv.includes(idA) && !csv.includes(idB))
    const { row } = rowOf(data)
    assert.ok(fs.readFileSync(path.join(site, `run-${row.slug}.html`), 'utf8').includes(`<code>${idA}</code>`))
    const page = fs.readFileSync(path.join(site, 'method-frequency-pruning.html'), 'utf8')
    assert.ok(page.includes(`data-variant="${idB}"`) && !page.includes(`data-variant="${idA}"`))
    assert.match(page, /<a href="run-[^"]*\.html">the current row<\/a> \(last swept \d{4}-/)
  })

  it('merged with the store of a machine that kept the edit, in either order: A, used last', () => {
    for (const [name, inputs] of [['b-then-a', [machineB, db]], ['a-then-b', [db, machineB]]] as const) {
      const out = path.join(dir, `${name}.sqlite`)
      cli(['merge', ...inputs, '--out', out])
      const merged = stored(out)
      assert.equal(merged.variants.get(idA)!.variant.lastUsedAt, A.variant.lastUsedAt, name)
      assert.equal(merged.variants.get(idB)!.variant.lastUsedAt, B.variant.lastUsedAt, name)
      const { row, scores, superseded } = rowOf(summary(out))
      assert.deepEqual([row.variantId, scores, superseded], [idA, A.scores, [idB]], name)
    }
    // The machine that kept the edit alone still shows B: nothing there says A was used since.
    assert.equal(rowOf(summary(machineB)).row.variantId, idB)
  })

  it('sweep --slurm with every cell held: A, used last, without a shard', () => {
    assert.match(slurm, /all 2 cells already complete in .*nothing to submit/)
    assert.match(slurm, /2 of 2 cells were already in the store; merged 0 runs/)
    const held = stored(slurmDb)
    assert.equal(held.runs, afterEdit.runs)
    assert.ok(held.variants.get(idA)!.variant.lastUsedAt > B.variant.lastUsedAt)
    const { row, scores, superseded } = rowOf(summary(slurmDb))
    assert.deepEqual([row.variantId, scores, superseded], [idA, A.scores, [idB]])
  })

  it('the edit applied again: B is the row again, nothing scored', () => {
    fs.writeFileSync(METHOD_FILE, `${original.replace("params.score === 'count' ? r.count[e]", "params.score === 'count' ? -r.count[e]")}\n// edited\n`)
    assert.match(sweep(db), /sweep: 0 cells scored, 2 already complete, 0 failed/)
    const { row, scores, superseded } = rowOf(summary(db))
    assert.deepEqual([row.variantId, scores, superseded], [idB, B.scores, [idA]])
  })
})
