// What one onnxruntime scoring session adds to a process's RSS, by checkpoint (memoryFit.ts
// SESSION_BYTES_PER_TENSOR was fitted on its output). For each checkpoint, two child processes (the
// first with an empty graph cache: graph built and optimized; the second from the cache, as a pool's
// later sessions are) open two sessions the engine's way (openGraphSession: mapped weights, 1 thread),
// score `rows` x `tokens` tokens twice in each, and print RSS (anonymous and file pages) after each step,
// the graph's node count and the peak.
//   node --import tsx bench/sessionMemory.ts [checkpoint ...]   (default q1 q2 q4 q8 q16 e4x4 e8x16)
// qN: Qwen3-30B-A3B's config at tiny width (syntheticCheckpoint.ts tinyWidth), N layers x 128 experts;
// eExL: E experts x L layers of it (another ratio of graph nodes to tensors); q48 is the real depth
// (18,867 tensors: ~2.5 GB and ~4 minutes). BENCH_ROWS / BENCH_TOKENS / BENCH_THREADS change the batch.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { REAL, tinyWidth, writeCheckpoint, type Config } from './syntheticCheckpoint.ts'

const SELF = fileURLToPath(import.meta.url)
type Status = { rss: number; anon: number; file: number; hwm: number }

function status(): Status {
  const text = fs.readFileSync('/proc/self/status', 'utf8')
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), hwm: kb('VmHWM') }
}

function config(name: string): Config {
  const q = tinyWidth(REAL.qwen3!.config)
  const m = /^q(\d+)$/.exec(name) ?? /^e(\d+)x(\d+)$/.exec(name)
  if (!m) throw new Error(`unknown checkpoint ${name}: qN (N layers x 128 experts) or eExL (E experts x L layers)`)
  const [experts, layers] = m.length === 2 ? [128, Number(m[1])] : [Number(m[1]), Number(m[2])]
  return { ...q, num_hidden_layers: layers, max_window_layers: layers, num_experts: experts, num_experts_per_tok: Math.min(8, experts) }
}

/** The child: two sessions of `dir`, graph cache under `cache`; one JSON line. */
async function child(dir: string, cache: string, rows: number, tokens: number, threads: number): Promise<void> {
  const { fromBinary } = await import('@bufbuild/protobuf')
  const { ModelProtoSchema } = await import('onnx-buf')
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { emptyEdits } = await import('../src/edits/variantEdits.ts')
  const { openGraphSession } = await import('../src/engine/graphSession.ts')
  const { packBatch } = await import('../src/engine/packing.ts')
  const { batchFeeds } = await import('../src/engine/scorer.ts')
  const gc = () => (globalThis as { gc?: () => void }).gc?.()
  const ckpt = openCheckpoint(dir, { warn: () => {} })
  gc()
  const out: Record<string, unknown> = { tensors: ckpt.tensors.size, opened: status() }
  const open = () => openGraphSession(ckpt, emptyEdits(), {}, { device: 'cpu', threads, cacheDir: cache })
  const a = await open()
  gc()
  out.fromCache = a.graphFromCache
  out.first = status()
  const b = await open()
  gc()
  out.second = status()
  const graphs = path.join(cache, 'graphs')
  const entry = fs.readdirSync(graphs).find(e => !e.startsWith('.'))!
  type G = { node: { attribute: { g?: G; graphs: G[] }[] }[] }
  const count = (g: G): number => g.node.length + g.node.reduce((n, x) => n + x.attribute.reduce((m, at) => m + (at.g ? count(at.g) : 0) + at.graphs.reduce((k, y) => k + count(y), 0), 0), 0)
  out.nodes = count(fromBinary(ModelProtoSchema, fs.readFileSync(path.join(graphs, entry, 'graph.onnx'))).graph as unknown as G)
  const ids = (k: number) => Array.from({ length: tokens + 1 }, (_, i) => 1 + ((i * 7919 + k * 31) % (ckpt.spec.vocabSize - 1)))
  const batch = packBatch(Array.from({ length: rows }, (_, k) => ({ prefix: ids(k), branches: [], scorePrefixFrom: 1 })), Array.from({ length: rows }, (_, k) => k))
  for (const s of [a, a, b, b]) await s.run(batchFeeds(batch), ['logprobs', 'greedy'])
  gc()
  out.scored = status()
  console.log(JSON.stringify(out))
}

async function main(): Promise<void> {
  const names = process.argv.slice(2).length ? process.argv.slice(2) : ['q1', 'q2', 'q4', 'q8', 'q16', 'e4x4', 'e8x16']
  const rows = Number(process.env.BENCH_ROWS ?? 2), tokens = Number(process.env.BENCH_TOKENS ?? 32), threads = Number(process.env.BENCH_THREADS ?? 1)
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'session-memory-'))
  const MB = (b: number) => (b / 1e6).toFixed(1)
  console.log('checkpoint cache tensors nodes | 1st session MB (anon, file) | 2nd session MB (anon, file) | 4 runs MB | peak over opened MB | per tensor and session kB')
  try {
    for (const name of names) {
      const dir = path.join(work, name), cache = path.join(work, `${name}-home`)
      await writeCheckpoint(dir, config(name), 7)
      for (const phase of ['cold', 'warm']) {
        const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, '--child', dir, cache, String(rows), String(tokens), String(threads)], { encoding: 'utf8' })
        if (r.status !== 0) throw new Error(`${name} ${phase}: ${r.stderr}`)
        const o = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tensors: number; nodes: number; opened: Status; first: Status; second: Status; scored: Status }
        const d = (x: Status, y: Status, k: keyof Status) => x[k] - y[k]
        const peak = o.scored.hwm - o.opened.rss
        console.log(`${name} ${phase} ${o.tensors} ${o.nodes} | ${MB(d(o.first, o.opened, 'rss'))} (${MB(d(o.first, o.opened, 'anon'))}, ${MB(d(o.first, o.opened, 'file'))}) | ` +
          `${MB(d(o.second, o.first, 'rss'))} (${MB(d(o.second, o.first, 'anon'))}, ${MB(d(o.second, o.first, 'file'))}) | ${MB(d(o.scored, o.second, 'rss'))} | ${MB(peak)} | ${(peak / 2 / o.tensors / 1e3).toFixed(1)}`)
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

if (process.argv[2] === '--child') {
  const [dir, cache, rows, tokens, threads] = process.argv.slice(3)
  await child(dir!, cache!, Number(rows), Number(tokens), Number(threads))
} else {
  await main()
}
