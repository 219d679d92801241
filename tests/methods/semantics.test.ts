// Each seed method's defining behaviour against an independent implementation: statistics are
// re-derived from the float64 reference forward pass (tests/reference/forward.ts) on the very same
// calibration windows, and the decisions (which experts go, what a novice outputs, which experts
// merge with what weights, which weights are zeroed) are recomputed here from first principles.
import assert from 'node:assert/strict'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { calibrationWindows } from '../../src/calibration/source.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { planVariant, prepareVariant, type PreparedVariant } from '../../src/variants/prepare.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { referenceLogprobs, type RefTrace } from '../reference/forward.ts'
import { overrideValues } from '../../src/edits/overrideTensor.ts'

const dir = tmpDir()
process.env.MOE_HARNESS_HOME = path.join(dir, 'home')
const E = 8, K = 2, D = 32, F = 16, LAYERS = 2
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: E, topK: K, layers: LAYERS, hidden: D, ffn: F, seed: 80 })
const ckpt = openCheckpoint(model.dir)
const calibration = { source: 'builtin', sequences: 6, length: 32, seed: 5 }
const engine = { device: 'cpu' as const, threads: 1 }

interface RefStats { tokens: number; count: number[]; gateSum: number[]; renormNorm: number[]; normSum: number[]; sum: number[][]; sumSq: number[][]; allSum: number[][]; gram: number[][]; ratios: number[]; traces: RefTrace[] }
const ref: RefStats[] = []

before(async () => {
  const { windows } = await calibrationWindows(calibration, ckpt.tokenizer())
  for (let l = 0; l < LAYERS; l++) {
    ref.push({ tokens: 0, count: Array(E).fill(0), gateSum: Array(E).fill(0), renormNorm: Array(E).fill(0), normSum: Array(E).fill(0), sum: [...Array(E)].map(() => Array(D).fill(0)), sumSq: [...Array(E)].map(() => Array(D).fill(0)), allSum: [...Array(E)].map(() => Array(D).fill(0)), gram: [...Array(E)].map(() => Array(E).fill(0)), ratios: [], traces: [] })
  }
  for (const w of windows) {
    referenceLogprobs(model.config, model.tensors, w, {
      trace: t => {
        const s = ref[t.layer]
        s.tokens++
        s.traces.push(t)
        const mx = Math.max(...t.logits)
        const ex = t.logits.map(z => Math.exp(z - mx))
        const Z = ex.reduce((a, b) => a + b, 0)
        const probs = ex.map(v => v / Z)
        for (let i = 0; i < E; i++) for (let j = 0; j < E; j++) s.gram[i][j] += t.logits[i] * t.logits[j]
        const sorted = [...probs].sort((a, b) => b - a)
        s.ratios.push(sorted[1] / sorted[0])
        for (let e = 0; e < E; e++) {
          const y = t.expertOut(e)
          for (let j = 0; j < D; j++) s.allSum[e][j] += y[j]
        }
        t.selected.forEach((e, i) => {
          const y = t.expertOut(e)
          const norm = Math.hypot(...y)
          s.count[e]++
          s.gateSum[e] += t.weights[i]
          s.renormNorm[e] += t.weights[i] * norm // Mixtral gates are already renormalised over the top-k
          s.normSum[e] += norm
          for (let j = 0; j < D; j++) { s.sum[e][j] += y[j]; s.sumSq[e][j] += y[j] * y[j] }
        })
      },
    })
  }
})

/** The tie rule of methods.md §6: keep the first `keep` by score descending, ties by index. */
function dropped(scores: number[], keep: number): number[] {
  return scores.map((s, e) => ({ s, e })).sort((a, b) => b.s - a.s || a.e - b.e).slice(keep).map(x => x.e).sort((a, b) => a - b)
}
async function run(method: string, params: Record<string, number | string | boolean>): Promise<PreparedVariant> {
  return prepareVariant(ckpt, await planVariant(ckpt, method, params), { calibration, ...engine })
}
const removedBy = (v: PreparedVariant, layer: number) => v.edits.layers[layer]?.disabled ?? []

describe('expert-pruning methods choose the experts an independent implementation chooses', () => {
  it('frequency-pruning: fewest routed tokens', async () => {
    const v = await run('frequency-pruning', { ratio: 0.25 })
    for (let l = 0; l < LAYERS; l++) assert.deepEqual(removedBy(v, l), dropped(ref[l].count, 6), `layer ${l}`)
  })

  it('reap: lowest mean of g·‖E(x)‖ over routed tokens', async () => {
    const v = await run('reap', { ratio: 0.5 })
    for (let l = 0; l < LAYERS; l++) {
      const s = ref[l].renormNorm.map((x, e) => (ref[l].count[e] ? x / ref[l].count[e] : 0))
      assert.deepEqual(removedBy(v, l), dropped(s, 4), `layer ${l}`)
    }
  })

  it('ean: lowest Σ‖E(x)‖ over routed tokens', async () => {
    const v = await run('ean', { ratio: 0.25 })
    for (let l = 0; l < LAYERS; l++) assert.deepEqual(removedBy(v, l), dropped(ref[l].normSum, 6), `layer ${l}`)
  })

  it('naee (one-pass = layerwise_pruning): the dropped subset minimising Σ‖Z − Z′‖_F, and dynamic-skip β = median w2/w1', async () => {
    const v = await run('naee', { ratio: 0.25, dynamicSkip: true, calibration: 'one-pass' })
    for (let l = 0; l < LAYERS; l++) {
      const traces = ref[l].traces
      let best: number[] = [], bestLoss = Infinity
      for (let a = 0; a < E; a++) for (let b = a + 1; b < E; b++) {
        let loss = 0, sq = 0
        traces.forEach((t, i) => {
          const alive = t.logits.map((_, e) => e !== a && e !== b)
          const mx = Math.max(...t.logits.filter((_, e) => alive[e]))
          const ex = t.logits.map((z, e) => (alive[e] ? Math.exp(z - mx) : 0))
          const top = ex.map((_, e) => e).filter(e => alive[e]).sort((x, y) => ex[y] - ex[x] || x - y).slice(0, K)
          const tot = top.reduce((s, e) => s + ex[e], 0)
          const z = new Float64Array(D)
          for (const e of top) { const y = t.expertOut(e); for (let j = 0; j < D; j++) z[j] += (ex[e] / tot) * y[j] }
          for (let j = 0; j < D; j++) sq += (t.output[j] - z[j]) ** 2
          if ((i + 1) % 256 === 0 || i === traces.length - 1) { loss += Math.sqrt(sq); sq = 0 }
        })
        if (loss < bestLoss - 1e-9) { bestLoss = loss; best = [a, b] }
      }
      assert.deepEqual(removedBy(v, l), best, `layer ${l}`)
      const sorted = [...ref[l].ratios].sort((x, y) => x - y)
      const med = sorted.length % 2 ? sorted[sorted.length >> 1] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2
      assert.ok(Math.abs(v.edits.layers[l].skipSecondBeta! - med) < 1e-4, `beta ${v.edits.layers[l].skipSecondBeta} vs ${med}`)
    }
  })
})

describe('novice-replacement (MoNE-P)', () => {
  it('replaces the lowest φ_var·φ_freq experts by their mean routed output; router kept', async () => {
    const v = await run('novice-replacement', { ratio: 0.25 })
    for (let l = 0; l < LAYERS; l++) {
      const s = ref[l]
      const score = s.count.map((n, e) => {
        let varSq = 0
        for (let j = 0; j < D; j++) if (n > 1) varSq += Math.max(0, (s.sumSq[e][j] - s.sum[e][j] ** 2 / n) / (n - 1))
        return Math.sqrt(varSq) * (s.gateSum[e] / s.tokens)
      })
      const expected = dropped(score, 6)
      const novices = v.edits.layers[l].novices!
      assert.deepEqual(Object.keys(novices).map(Number).sort((a, b) => a - b), expected)
      for (const e of expected) {
        const mean = s.sum[e].map(x => x / s.count[e])
        novices[e].forEach((x, j) => assert.ok(Math.abs(x - mean[j]) < 1e-4, `novice ${l}/${e}[${j}] ${x} vs ${mean[j]}`))
      }
      assert.equal(v.edits.layers[l].disabled, undefined, 'the router keeps every slot')
    }
  })
})

describe('expert-merging', () => {
  it('hc-smoe: average-linkage clusters of mean outputs over all tokens, frequency-weighted merge', async () => {
    const v = await run('hc-smoe', { ratio: 0.5 })
    for (let l = 0; l < LAYERS; l++) {
      const o = ref[l].allSum.map(x => x.map(y => y / ref[l].tokens))
      const dist = (a: number[], b: number[]) => Math.hypot(...a.map((x, j) => x - b[j]))
      let clusters = [...Array(E)].map((_, e) => [e])
      while (clusters.length > 4) {
        let bi = 0, bj = 1, best = Infinity
        for (let i = 0; i < clusters.length; i++) for (let j = i + 1; j < clusters.length; j++) {
          let s = 0
          for (const a of clusters[i]) for (const b of clusters[j]) s += dist(o[a], o[b])
          s /= clusters[i].length * clusters[j].length
          if (s < best - 1e-12) { best = s; bi = i; bj = j }
        }
        clusters[bi] = [...clusters[bi], ...clusters[bj]].sort((a, b) => a - b)
        clusters.splice(bj, 1)
      }
      const groupsOf = (x: number[][]) => x.map(g => [...g].sort((a, b) => a - b)).sort((a, b) => a[0] - b[0])
      const got = v.accounting.layers[l]
      const actual = groupsOf([...got.groups, ...got.kept.filter(k => !got.groups.some(g => g.includes(k))).map(k => [k])])
      assert.deepEqual(actual, groupsOf(clusters), `layer ${l}`)
      // Merged gate weights = Σ f_i W_i / (Σ f_i + 1e-7) over the group with f = the layer's normalised
      // usage frequencies (official _merge_mlp_experts_by_usage_frequency_weighting), in the dominant slot.
      for (const g of got.groups) {
        const name = (e: number) => `model.layers.${l}.block_sparse_moe.experts.${e}.w1.weight`
        const layerTotal = ref[l].count.reduce((a, b) => a + b, 0)
        const f = g.map(e => ref[l].count[e] / layerTotal)
        const total = f.reduce((a, b) => a + b, 0)
        const merged = overrideValues(v.edits.overrides[name(g[0])]!)
        for (let i = 0; i < 20; i++) {
          const expect = g.reduce((s, e, k) => s + (f[k] / (total + 1e-7)) * model.tensors.get(name(e))!.data[i], 0)
          assert.ok(Math.abs(merged[i] - expect) < 1e-5)
        }
        for (const member of g.slice(1)) assert.equal(v.edits.layers[l].bindings![member], g[0])
      }
    }
  })

  it('m-smoe (allocation=layer): the most used experts dominate, the rest join the most similar by router-logit cosine', async () => {
    const v = await run('m-smoe', { ratio: 0.25, allocation: 'layer' })
    for (let l = 0; l < LAYERS; l++) {
      const s = ref[l]
      const dominants = s.count.map((c, e) => ({ c, e })).sort((a, b) => b.c - a.c || a.e - b.e).slice(0, 6).map(x => x.e)
      const sim = (i: number, j: number) => (s.gram[i][j] / Math.sqrt(s.gram[i][i] * s.gram[j][j]) + 1) / 2
      const bindings = v.edits.layers[l].bindings ?? {}
      for (let e = 0; e < E; e++) {
        if (dominants.includes(e)) { assert.equal(bindings[e], undefined); continue }
        const best = dominants.reduce((b, d) => (sim(e, d) > sim(e, b) ? d : b), dominants[0])
        assert.equal(bindings[e], best, `layer ${l} expert ${e}`)
      }
    }
  })
})

describe('m-smoe defaults', () => {
  it('chooses the groups of an independent implementation of methods.md §13 (global allocation)', async () => {
    for (const ratio of [0.25, 0.5]) {
      const v = await run('m-smoe', { ratio })
      // methods.md §13 step 3: normalised frequencies, each layer's most used set to 1.0,
      // threshold = sorted_desc(all)[avgGroups × layers], groups_l = #(freq > threshold).
      const freqs = ref.map(s => {
        const total = s.count.reduce((a, b) => a + b, 0)
        const f = s.count.map(c => c / total)
        f[f.indexOf(Math.max(...f))] = 1
        return f
      })
      const avgGroups = E - Math.floor(ratio * E)
      const threshold = freqs.flat().sort((a, b) => b - a)[avgGroups * LAYERS]
      for (let l = 0; l < LAYERS; l++) {
        const s = ref[l]
        const groups = freqs[l].filter(f => f > threshold).length
        const byUsage = s.count.map((c, e) => ({ c, e })).sort((a, b) => b.c - a.c || a.e - b.e).map(x => x.e)
        const dominants = byUsage.slice(0, groups)
        const sim = (i: number, j: number) => (s.gram[i][j] / Math.sqrt(s.gram[i][i] * s.gram[j][j]) + 1) / 2
        const expected = new Map(dominants.map(d => [d, [d]]))
        for (const e of byUsage.slice(groups)) {
          let best = dominants[0]
          for (const d of dominants) if (sim(e, d) > sim(e, best)) best = d
          expected.get(best)!.push(e)
        }
        const bindings = v.edits.layers[l]?.bindings ?? {}
        const got = new Map<number, number[]>()
        for (let e = 0; e < E; e++) {
          const src = bindings[e] ?? e
          got.set(src, [...(got.get(src) ?? []), e])
        }
        const norm = (m: Map<number, number[]>) => [...m.values()].map(g => [...g].sort((a, b) => a - b)).sort((a, b) => a[0] - b[0])
        assert.deepEqual(norm(got), norm(expected), `ratio ${ratio} layer ${l}`)
      }
      const perLayer = freqs.map(f => f.filter(x => x > threshold).length)
      assert.ok(new Set(perLayer).size > 1, `the fixture must allocate unevenly to tell global from per-layer allocation (got ${perLayer})`)
      assert.equal(v.report.achievedRatio, perLayer.reduce((a, g) => a + E - g, 0) / (E * LAYERS))
    }
  })
})

describe('unstructured pruning', () => {
  it('magnitude: exactly floor(s·numel) smallest |W| per matrix, ties by index', async () => {
    const v = await run('magnitude-pruning', { ratio: 0.5 })
    const name = 'model.layers.1.block_sparse_moe.experts.3.w2.weight'
    const w = model.tensors.get(name)!.data
    const order = Array.from(w.keys()).sort((a, b) => Math.abs(w[a]) - Math.abs(w[b]) || a - b).slice(0, Math.floor(0.5 * w.length))
    const values = overrideValues(v.edits.overrides[name]!)
    const zeroed = Array.from(values.keys()).filter(i => values[i] === 0)
    assert.deepEqual(zeroed, order.sort((a, b) => a - b))
  })

  it('wanda: per output row, |W|·‖X_col‖₂ with the inputs routed to the expert', async () => {
    const v = await run('magnitude-pruning', { ratio: 0.5, score: 'wanda', calibration: 'one-pass' })
    const l = 0, e = 2
    const norm = Array(D).fill(0)
    for (const t of ref[l].traces) if (t.selected.includes(e)) for (let j = 0; j < D; j++) norm[j] += t.input[j] ** 2
    const name = `model.layers.${l}.block_sparse_moe.experts.${e}.w1.weight`
    const w = model.tensors.get(name)!.data
    const got = overrideValues(v.edits.overrides[name]!)
    for (let r = 0; r < F; r++) {
      const row = [...Array(D).keys()].map(j => ({ j, s: Math.abs(w[r * D + j]) * Math.sqrt(norm[j]) })).sort((a, b) => a.s - b.s || a.j - b.j)
      const expect = row.slice(0, D / 2).map(x => x.j).sort((a, b) => a - b)
      const zeros = [...Array(D).keys()].filter(j => got[r * D + j] === 0)
      assert.deepEqual(zeros, expect, `row ${r}`)
    }
  })
})

describe('neuron-top-k', () => {
  it('keeps rho = 1 - ratio of the neurons in every MoE layer', async () => {
    const v = await run('neuron-top-k', { ratio: 0.75 })
    for (let l = 0; l < LAYERS; l++) assert.equal(v.edits.layers[l].neuronKeep, 0.25)
    assert.equal(v.report.achievedRatio, 1 - Math.ceil(0.25 * F) / F)
  })
})
