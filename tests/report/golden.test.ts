// Golden pages: every page of the site for a small synthetic store (rows written through the store's
// public write API, values from a seeded generator) must equal its normalised snapshot in
// tests/report/golden/. A change of layout, wording or number format fails here with a diff and a
// `<page>-changed` file beside the golden (gitignored). To accept an intended change, inspect the
// -changed files (or the diff) and rerun with UPDATE_GOLDEN=1:
//   UPDATE_GOLDEN=1 node --import tsx --test tests/report/golden.test.ts
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { BASELINE_CONTENT_HASH as BASELINE_CONTENT } from '../../src/identity/keys.ts'
import { summarize } from '../../src/report/leaderboardData.ts'
import { buildPages, type Page } from '../../src/report/renderSite.ts'
import { parseCalibration, sampleCorrectness } from '../../src/store/reads.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import type { VariantAccounting } from '../../src/variants/accounting.ts'
import { tmpDir } from '../helpers/tmp.ts'

const GOLDEN = path.join(import.meta.dirname, 'golden')
const UPDATE = process.env.UPDATE_GOLDEN === '1'
const CHANGED = '-changed'

/** Only what legitimately differs between two renders of the same results: wall-clock times (the sweep's finish time, when variants were recorded), ISO or as pages show them. */
function normalise(content: string): string {
  return content.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>').replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/g, '<time>')
}

/** A unified-style diff of the first differing region (3 lines of context; long lines cut around the first differing column). */
function diffText(expected: string, actual: string, name: string): string {
  const a = expected.split('\n'), b = actual.split('\n')
  let start = 0
  while (start < a.length && start < b.length && a[start] === b[start]) start++
  let endA = a.length - 1, endB = b.length - 1
  while (endA >= start && endB >= start && a[endA] === b[endB]) { endA--; endB-- }
  const clip = (line: string, other: string | undefined) => {
    if (line.length <= 200) return line
    let col = 0
    while (other !== undefined && col < line.length && line[col] === other[col]) col++
    const from = Math.max(0, col - 80)
    return `${from ? `…[col ${from}]` : ''}${line.slice(from, col + 120)}${col + 120 < line.length ? '…' : ''}`
  }
  const out = [`--- ${name} (golden)`, `+++ ${name} (rendered)`, `@@ -${start + 1},${endA - start + 1} +${start + 1},${endB - start + 1} @@`]
  for (let i = Math.max(0, start - 3); i < start; i++) out.push(` ${clip(a[i], undefined)}`)
  const shown = 12
  for (let i = start; i <= endA && i < start + shown; i++) out.push(`-${clip(a[i], b[i])}`)
  if (endA - start + 1 > shown) out.push(`-… ${endA - start + 1 - shown} more lines`)
  for (let i = start; i <= endB && i < start + shown; i++) out.push(`+${clip(b[i], a[i])}`)
  if (endB - start + 1 > shown) out.push(`+… ${endB - start + 1 - shown} more lines`)
  for (let i = endA + 1; i < Math.min(a.length, endA + 4); i++) out.push(` ${clip(a[i], undefined)}`)
  return out.join('\n')
}

const accountingOf = (removedPerLayer: number[][], neuronKeep?: number): VariantAccounting => {
  const removed = removedPerLayer.flat().length
  return {
    totalParams: 50_000 - removed * 3_000, expertParams: 24_000 - removed * 3_000, baseExpertParams: 24_000, baseTotalParams: 50_000,
    nonzeroParams: 50_000 - removed * 3_000 - (neuronKeep === undefined ? 0 : 4_000), memoryBytes: (50_000 - removed * 3_000) * 4,
    activeParamsPerToken: 32_000 - (neuronKeep === undefined ? 0 : 2_000), baseActiveParamsPerToken: 32_000,
    layers: removedPerLayer.map((r, layer) => ({
      layer, experts: 4, kept: [0, 1, 2, 3].filter(e => !r.includes(e)), removed: r, novices: [], groups: [], ...(neuronKeep === undefined ? {} : { neuronKeep }),
    })),
  }
}

/**
 * A small deterministic store: one model, the unpruned baseline, two methods (one at two ratios, one
 * with a non-default parameter), a failed variant, three tasks (multiple choice, loglikelihood,
 * rolling), a calibration with routing load and one finished sweep.
 */
function buildStore(file: string): ResultsStore {
  const store = new ResultsStore(file)
  const rng = mulberry32(20261130)
  const modelId = 'synthetic-model-0001'
  store.upsertModel({
    model_id: modelId, name: 'tiny <moe> & co', path: '/nonexistent/tiny-moe', architecture: 'OlmoeForCausalLM',
    config_json: JSON.stringify({ num_experts: 4, num_experts_per_tok: 2, num_hidden_layers: 2, hidden_size: 16 }), total_params: 50_000,
  })
  store.saveMethodInfo({
    name: 'frequency-pruning', family: 'expert pruning', description: 'Drops the experts the router picks least on the calibration set.',
    params_json: JSON.stringify({ ratio: { type: 'number', default: 0.25, description: 'share of experts removed per layer' } }),
    reference_json: JSON.stringify({ paper: 'https://arxiv.org/abs/0000.00000' }), code_hash: 'c0de',
  })
  store.saveMethodInfo({
    name: 'neuron-top-k', family: 'neuron pruning', description: 'Keeps the top-k FFN neurons of every expert by activation magnitude.',
    params_json: JSON.stringify({ ratio: { type: 'number', default: 0.25, description: 'share of neurons removed' }, score: { type: 'enum', default: 'magnitude', values: ['magnitude', 'wanda'], description: 'neuron score' } }),
    reference_json: null, code_hash: 'c0de',
  })
  const tasks = [
    { name: 'mc-task', version: 2, kind: 'multiple_choice', description: 'Four-way multiple choice.', metrics: ['acc', 'acc_norm'], primary: 'acc' },
    { name: 'll-task', version: 1, kind: 'loglikelihood', description: 'Last-word prediction.', metrics: ['perplexity', 'acc'], primary: 'acc' },
    { name: 'roll-task', version: 1, kind: 'rolling', description: 'Rolling perplexity <of> text.', metrics: ['word_perplexity', 'bits_per_byte'], primary: 'word_perplexity' },
  ]
  for (const t of tasks) store.saveTaskInfo({ name: t.name, version: t.version, kind: t.kind, description: t.description, metrics_json: JSON.stringify(t.metrics), primary_metric: t.primary })
  store.saveCalibration({
    model_id: modelId, calibration_key: 'cal-1', info_json: JSON.stringify({ sequences: 4, length: 32 }),
    routing_load_json: JSON.stringify([{ layer: 0, load: [0.4, 0.3, 0.2, 0.1] }, { layer: 1, load: [0.1, 0.2, 0.3, 0.4] }]),
  })
  const sweep = store.startSweep('{}', 15)
  // An older variant of frequency-pruning 0.25 (the method file was edited since): recorded first, so
  // superseded by v-fp25; its runs are written last, from their own generator, so the others' values stay.
  interface SyntheticVariant { id: string; method: string; params: Record<string, unknown>; ratio: number; hash: string; accounting: VariantAccounting; skill: number; calibration: { procedure: string; tokens: number; seconds: number } | null }
  const superseded: SyntheticVariant = { id: 'v-fp0025-old', method: 'frequency-pruning', params: { ratio: 0.25 }, ratio: 0.25, hash: 'hash-fp25-old', accounting: accountingOf([[0], [3]]), skill: 0.6, calibration: { procedure: 'one-pass', tokens: 64, seconds: 0.25 } }
  const saveVariant = (v: SyntheticVariant) => store.saveVariant({
    variant_id: v.id, model_id: modelId, method: v.method, params_json: JSON.stringify(v.params), ratio: v.ratio, achieved_ratio: v.ratio,
    content_hash: v.hash, accounting_json: JSON.stringify(v.accounting), report_json: JSON.stringify({ notes: v.ratio ? { scored: 'frequency' } : {} }),
    warnings_json: JSON.stringify(v.id === 'v-nt50' ? ['wanda needs calibration <data>'] : []), calibration_json: v.calibration ? JSON.stringify(v.calibration) : null,
    transform_seconds: 0.25, status: 'ready', error: null,
  })
  saveVariant(superseded)
  const recordedAt = Date.now()
  while (Date.now() <= recordedAt + 1) { /* the next variants are recorded at a later millisecond */ }
  const variants = [
    { id: 'v-base', method: 'frequency-pruning', params: { ratio: 0 }, ratio: 0, hash: BASELINE_CONTENT, accounting: accountingOf([[], []]), skill: 0.8, calibration: null },
    { id: 'v-fp25', method: 'frequency-pruning', params: { ratio: 0.25 }, ratio: 0.25, hash: 'hash-fp25', accounting: accountingOf([[3], [0]]), skill: 0.7, calibration: { procedure: 'one-pass', tokens: 128, seconds: 0.5 } },
    { id: 'v-fp50', method: 'frequency-pruning', params: { ratio: 0.5 }, ratio: 0.5, hash: 'hash-fp50', accounting: accountingOf([[2, 3], [0, 1]]), skill: 0.5, calibration: { procedure: 'sequential', tokens: 256, seconds: 1.25 } },
    { id: 'v-nt50', method: 'neuron-top-k', params: { ratio: 0.5, score: 'wanda' }, ratio: 0.5, hash: 'hash-nt50', accounting: accountingOf([[], []], 8), skill: 0.3, calibration: null },
  ]
  const saveRuns = (v: SyntheticVariant, rng: () => number) => {
    const docs = 24
    for (const t of tasks) {
      const samples = [], correct: number[] = [], lls: number[] = [], words: number[] = [], bytes: number[] = []
      for (let doc = 0; doc < docs; doc++) {
        const ok = rng() < v.skill ? 1 : 0
        const gold = Math.floor(rng() * 4)
        const ll = -1 - 4 * rng() * (1.5 - v.skill)
        const counts = { tokens: 10, words: 6 + (doc % 3), bytes: 30 + doc }
        correct.push(ok); lls.push(ll); words.push(counts.words); bytes.push(counts.bytes)
        const pred = ok ? gold : (gold + 1) % 4
        samples.push({
          doc, gold_json: JSON.stringify(t.kind === 'rolling' ? null : t.kind === 'loglikelihood' ? 0 : gold),
          lls_json: JSON.stringify(t.kind === 'multiple_choice' ? [ll, ll - 1, ll - 2, ll - 3] : [ll]), lls_unconditional_json: null,
          greedy_json: JSON.stringify(t.kind === 'loglikelihood' ? [ok === 1] : t.kind === 'rolling' ? [false] : [false, false, false, false]),
          preds_json: JSON.stringify(t.kind === 'multiple_choice' ? { acc: pred, acc_norm: pred } : {}), counts_json: t.kind === 'rolling' ? JSON.stringify(counts) : null,
        })
      }
      const mean = correct.reduce((a, b) => a + b, 0) / docs
      const stderr = Math.sqrt((mean * (1 - mean) * docs) / (docs - 1) / docs)
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
      const metrics = t.kind === 'rolling'
        ? [{ metric: 'word_perplexity', value: Math.exp(-sum(lls) / sum(words)), stderr: null, higher_is_better: 0 }, { metric: 'bits_per_byte', value: -sum(lls) / sum(bytes) / Math.LN2, stderr: null, higher_is_better: 0 }]
        : [{ metric: 'acc', value: mean, stderr, higher_is_better: 1 }, ...(t.kind === 'multiple_choice' ? [{ metric: 'acc_norm', value: mean, stderr, higher_is_better: 1 }] : [{ metric: 'perplexity', value: Math.exp(-sum(lls) / docs), stderr: 0.5, higher_is_better: 0 }])]
      store.saveRun({
        model_id: modelId, content_hash: v.hash, task: t.name, task_version: t.version, subset: 'all', scoring_key: 'sk', harness_version: '0.0.0-golden',
        ort_version: '0.0.0', device: 'cpu', status: 'complete', error: null, docs, seconds: 2 + docs / 10, tokens_processed: 1000 * docs, tokens_per_choice: 0,
      }, metrics, samples)
    }
  }
  for (const v of variants) {
    saveVariant(v)
    saveRuns(v, rng)
  }
  saveRuns(superseded, mulberry32(20261201))
  store.saveVariant({
    variant_id: 'v-nt25', model_id: modelId, method: 'neuron-top-k', params_json: JSON.stringify({ ratio: 0.25, score: 'wanda' }), ratio: 0.25, achieved_ratio: null,
    content_hash: null, accounting_json: null, report_json: null, warnings_json: null, calibration_json: null, transform_seconds: null, status: 'failed',
    error: 'METHOD_FAILED: <calibration> produced NaN scores',
  })
  store.finishSweep(sweep, 15, 1, {})
  return store
}

async function renderGoldenSite(): Promise<Page[]> {
  const store = buildStore(path.join(tmpDir(), 'golden.sqlite'))
  try {
    return await buildPages(summarize(store, 'Golden <board>'))
  } finally {
    store.close()
  }
}

describe('report golden pages', () => {
  it('every page equals its normalised golden snapshot (UPDATE_GOLDEN=1 accepts a change)', async () => {
    const pages = await renderGoldenSite()
    assert.ok(pages.length >= 10, `expected a full site, got ${pages.map(p => p.path).join(', ')}`)
    fs.mkdirSync(GOLDEN, { recursive: true })
    const problems: string[] = []
    const rendered = new Set(pages.map(p => p.path))
    for (const page of pages) {
      const file = path.join(GOLDEN, page.path)
      const actual = normalise(page.content)
      fs.rmSync(`${file}${CHANGED}`, { force: true })
      if (UPDATE) {
        fs.writeFileSync(file, actual)
        continue
      }
      if (!fs.existsSync(file)) {
        fs.writeFileSync(`${file}${CHANGED}`, actual)
        problems.push(`${page.path}: no golden snapshot; inspect ${path.relative(process.cwd(), file)}${CHANGED} and accept it with UPDATE_GOLDEN=1`)
        continue
      }
      const expected = fs.readFileSync(file, 'utf8')
      if (expected !== actual) {
        fs.writeFileSync(`${file}${CHANGED}`, actual)
        problems.push(`${diffText(expected, actual, page.path)}\n(rendered page written to ${path.relative(process.cwd(), file)}${CHANGED}; accept with UPDATE_GOLDEN=1)`)
      }
    }
    for (const f of fs.readdirSync(GOLDEN).filter(f => !f.endsWith(CHANGED) && !rendered.has(f))) {
      if (UPDATE) fs.rmSync(path.join(GOLDEN, f))
      else problems.push(`${f}: golden snapshot of a page the site no longer has; remove it (UPDATE_GOLDEN=1 does)`)
    }
    assert.equal(problems.length, 0, `${problems.length} page(s) differ from tests/report/golden:\n\n${problems.join('\n\n')}`)
  })

  it("the store's typed reads return domain objects: variants by status, legacy calibration, sweeps, derived correctness", () => {
    const store = buildStore(path.join(tmpDir(), 'reads.sqlite'))
    try {
      const variants = store.storedVariants('synthetic-model-0001')
      // By method, then the params' JSON text ({"ratio":0.25} sorts before {"ratio":0}).
      // Ties by variant id; each with when the store recorded it (the superseded v-fp0025-old first).
      assert.deepEqual(variants.map(v => `${v.variantId}:${v.status}`), ['v-fp0025-old:ready', 'v-fp25:ready', 'v-fp50:ready', 'v-base:ready', 'v-nt25:failed', 'v-nt50:ready'])
      const at = new Map(variants.map(v => [v.variantId, v.createdAt]))
      for (const t of at.values()) assert.match(t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      assert.ok(at.get('v-fp0025-old')! < at.get('v-fp25')!)
      const fp50 = variants.find(v => v.variantId === 'v-fp50')
      assert.ok(fp50?.status === 'ready')
      assert.deepEqual(fp50.calibration, { procedure: 'sequential', tokens: 256, seconds: 1.25 })
      assert.deepEqual(fp50.accounting.layers[1].removed, [0, 1])
      assert.deepEqual(fp50.notes, { scored: 'frequency' })
      const failed = variants.find(v => v.variantId === 'v-nt25')
      assert.ok(failed?.status === 'failed' && failed.error === 'METHOD_FAILED: <calibration> produced NaN scores')
      const last = store.latestSweep()
      assert.deepEqual([last?.config, last?.cells, last?.completed, last?.failed], [{}, 15, 15, 1])
      assert.match(last?.finishedAt ?? '', /^\d{4}-\d\d-\d\dT/)
      assert.deepEqual(store.sweepSummary(), { sweeps: 1, lastSweep: last?.finishedAt })
      const run = store.completeRuns('synthetic-model-0001').find(r => r.task === 'll-task' && r.contentHash === 'hash-fp25')!
      const correct = store.sampleCorrectness(run.runId, 'loglikelihood', 'acc')!
      assert.equal(correct.length, 24)
      assert.equal(correct.reduce((a, b) => a + b, 0) / 24, store.runMetric(run.runId, 'acc')?.value)
      assert.equal(store.sampleCorrectness(run.runId, 'loglikelihood', 'perplexity'), null)
    } finally {
      store.close()
    }
    // Rows from before calibration procedures were one-pass; exact_match is "a gold choice is greedy".
    assert.deepEqual(parseCalibration(JSON.stringify({ tokens: 64, seconds: 2 })), { procedure: 'one-pass', tokens: 64, seconds: 2 })
    const row = (gold: unknown, greedy: boolean[], preds: object) => ({ gold_json: JSON.stringify(gold), greedy_json: JSON.stringify(greedy), preds_json: JSON.stringify(preds) })
    assert.equal(sampleCorrectness('generate_until', 'exact_match', row([1, 2], [false, false, true], {})), 1)
    assert.equal(sampleCorrectness('generate_until', 'exact_match', row(0, [false, true], {})), 0)
    assert.equal(sampleCorrectness('multiple_choice', 'acc_norm', row([1, 3], [false], { acc: 0, acc_norm: 3 })), 1)
    assert.equal(sampleCorrectness('multiple_choice', 'acc', row([1, 3], [false], { acc: 0, acc_norm: 3 })), 0)
  })

  it('normalises only times, and the diff points at the changed column', () => {
    assert.equal(normalise('last finished 2026-11-30T00:01:02.345Z, v1.2.3'), 'last finished <time>, v1.2.3')
    assert.equal(normalise('made 2026-11-30 00:01:02 UTC, 0.6250'), 'made <time>, 0.6250')
    const d = diffText('a\nb\n' + 'x'.repeat(300) + '1' + 'y'.repeat(50) + '\nc', 'a\nb\n' + 'x'.repeat(300) + '2' + 'y'.repeat(50) + '\nc', 'p.html')
    assert.match(d, /^@@ -3,1 \+3,1 @@$/m)
    assert.match(d, /^-…\[col 220\]x{80}1y{50}$/m)
    assert.match(d, /^\+…\[col 220\]x{80}2y{50}$/m)
  })
})
