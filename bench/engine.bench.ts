// npm run bench: scoring throughput of the sparse MoE graph on a Mixtral-shaped model (hidden 256,
// 8 experts, top-2, ffn 512, 4 layers, 1024 tokens per batch) at 1 and 2 intra-op threads, against
// (a) the same model with every expert computed densely, (b) a large fp32 MatMul in onnxruntime as
// the machine's ceiling, and (c) neuron top-k (rho = 0.5) on the same graph.
// The last line printed is one JSON object with the figures.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { emptyEdits, type VariantEdits } from '../src/edits/variantEdits.ts'
import { packBatch, type ScoreRequest } from '../src/engine/packing.ts'
import { batchFeeds } from '../src/engine/scorer.ts'
import { openCheckpoint } from '../src/model/checkpoint.ts'
import type { ModelSpec, MoeLayerSpec } from '../src/model/modelSpec.ts'
import { GraphBuilder } from '../src/onnx/graphBuilder.ts'
import { buildScoringGraph, type GraphOptions } from '../src/onnx/moeGraph.ts'
import { createSession, ORT_VERSION } from '../src/ort/ort.ts'
import { mulberry32 } from '../src/util/rng.ts'
import { writeTinyCheckpoint } from '../tests/helpers/tinyCheckpoint.ts'

const ROWS = 4, WIDTH = 256 // 1024 tokens per batch
const VOCAB = 8192
const MIN_SECONDS = Number(process.env.BENCH_SECONDS ?? 3)

/**
 * Median seconds per run of each job. Jobs run in blocks, interleaved over several rounds, so clock
 * drift and background load hit every variant alike; within a block only one session is busy, as
 * onnxruntime's spinning pool threads of an idle session would otherwise steal the other's cores.
 */
async function timeInterleaved(jobs: Record<string, () => Promise<unknown>>): Promise<Record<string, number>> {
  const names = Object.keys(jobs)
  const times: Record<string, number[]> = Object.fromEntries(names.map(n => [n, []]))
  const rounds = 3
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      await jobs[name]()
      const start = performance.now()
      let count = 0
      while (count < 3 || (performance.now() - start) / 1000 < MIN_SECONDS / rounds) {
        const t0 = performance.now()
        await jobs[name]()
        times[name].push((performance.now() - t0) / 1000)
        count++
      }
    }
  }
  return Object.fromEntries(names.map(n => {
    const sorted = [...times[n]].sort((a, b) => a - b)
    return [n, sorted[Math.floor(sorted.length / 2)]]
  }))
}

/** FLOPs the model needs for one batch (causal attention counted over visible keys only). */
function usefulFlops(spec: ModelSpec, scored: number): number {
  const d = spec.hiddenSize, hd = spec.headDim, H = spec.numHeads, KV = spec.numKvHeads
  const tokens = ROWS * WIDTH
  let perToken = 0
  for (const layer of spec.layers as MoeLayerSpec[]) {
    perToken += 2 * d * hd * (2 * H + 2 * KV) // q, k, v, o projections
    perToken += 2 * d * layer.numExperts // router
    perToken += layer.topK * 6 * d * layer.expertFfn // routed SwiGLU experts
  }
  let attention = 0
  for (let t = 0; t < WIDTH; t++) attention += 4 * hd * H * (t + 1) * spec.layers.length
  return tokens * perToken + ROWS * attention + scored * 2 * d * spec.vocabSize
}

async function matmulCeilingJob(threads: number) {
  const n = 1024
  const g = new GraphBuilder('ceiling')
  const a = g.input('a', 'float32', [n, n])
  const rng = mulberry32(1)
  const b = Float32Array.from({ length: n * n }, () => rng() - 0.5)
  const w = g.externalInitializer('b', 'float32', [n, n], 'b', new Uint8Array(b.buffer))
  g.op('MatMul', [a, w], {}, 'c')
  g.output('c', 'float32', [n, n])
  const session = await createSession({ model: g.toBytes(), external: g.external }, { device: 'cpu', threads })
  const input = Float32Array.from({ length: n * n }, () => rng() - 0.5)
  return { flops: 2 * n * n * n, session, run: () => session.run({ a: { type: 'float32', data: input, dims: [n, n] } }) }
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-bench-'))
  try {
    writeTinyCheckpoint(dir, { family: 'mixtral', hidden: 256, heads: 4, kvHeads: 2, experts: 8, topK: 2, ffn: 512, layers: 4, vocab: VOCAB, seed: 7 })
    const ckpt = openCheckpoint(dir)
    const rng = mulberry32(2)
    const requests: ScoreRequest[] = Array.from({ length: ROWS }, () => ({ prefix: Array.from({ length: WIDTH }, () => Math.floor(rng() * VOCAB)), branches: [], scorePrefixFrom: 1 }))
    const batch = packBatch(requests, requests.map((_, i) => i))
    const feeds = batchFeeds(batch)
    const scored = batch.scoreTargets.length
    const flops = usefulFlops(ckpt.spec, scored)
    const neuron: VariantEdits = { overrides: {}, layers: Object.fromEntries(ckpt.spec.layers.map(l => [l.index, { neuronKeep: 0.5 }])) }
    const graphs: Record<string, [VariantEdits, GraphOptions]> = {
      sparse: [emptyEdits(), {}],
      dense: [emptyEdits(), { denseExperts: true }],
      neuronTopK: [neuron, {}],
    }
    const results: Record<string, Record<string, number>> = {}
    for (const threads of [1, 2]) {
      const sessions = []
      const jobs: Record<string, () => Promise<unknown>> = {}
      for (const [name, [edits, options]] of Object.entries(graphs)) {
        const session = await createSession(buildScoringGraph(ckpt, edits, options), { device: 'cpu', threads })
        sessions.push(session)
        jobs[name] = () => session.run(feeds, ['logprobs'])
      }
      const ceiling = await matmulCeilingJob(threads)
      sessions.push(ceiling.session)
      jobs.ceiling = ceiling.run
      const t = await timeInterleaved(jobs)
      for (const session of sessions) await session.release()
      const r: Record<string, number> = {}
      for (const name of Object.keys(graphs)) r[`${name}Seconds`] = t[name]
      r.ceilingGflops = ceiling.flops / t.ceiling / 1e9
      r.tokensPerSecond = (ROWS * WIDTH) / r.sparseSeconds
      r.usefulGflops = flops / r.sparseSeconds / 1e9
      r.usefulOfCeiling = r.usefulGflops / r.ceilingGflops
      r.sparseOverDense = r.sparseSeconds / r.denseSeconds
      r.neuronTopKOverPlain = r.neuronTopKSeconds / r.sparseSeconds
      results[`threads${threads}`] = r
      console.log(`threads ${threads}: ${r.tokensPerSecond.toFixed(0)} tokens/s, useful ${r.usefulGflops.toFixed(1)} GFLOP/s = ` +
        `${(100 * r.usefulOfCeiling).toFixed(1)}% of the MatMul ceiling (${r.ceilingGflops.toFixed(1)} GFLOP/s); ` +
        `sparse/dense time ${r.sparseOverDense.toFixed(3)}; neuron top-k/plain ${r.neuronTopKOverPlain.toFixed(3)}`)
    }
    console.log(JSON.stringify({
      benchmark: 'engine', ort: ORT_VERSION, cpus: os.cpus().length, model: 'mixtral d256 E8 k2 F512 L4 V8192', tokensPerBatch: ROWS * WIDTH,
      usefulGflopPerBatch: flops / 1e9, ...results,
    }))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

await main()
