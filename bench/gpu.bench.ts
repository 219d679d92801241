// npm run bench:gpu: the GPU path of issue 10 §6, measured on a machine lent through the `device` tool
// (scripts/device/run.sh runs it there; README.md "GPU validation" gives the calls). Four parts, run in
// the order a, b, d, c, each measurement a child process killed at its cap (bench/childProcess.ts, as
// bench/scale.bench.ts does); the whole run stops starting children at BENCH_GPU_BUDGET_SECONDS:
// a part that fails records its error, exit code and stderr, and the other parts still run.
//  (a) device: checkDeviceAvailable (src/ort/ort.ts) and a session of the built-in model (models/tiny-moe)
//      on the device at its default precision (engine/graphSession.ts defaultPrecision), one run; the
//      error as onnxruntime words it when either fails; with onnxruntime's profile, how many nodes ran on
//      each execution provider and which op types fell back to the CPU.
//  (b) parity on the built-in model: per-token log-probabilities of a fixed text (the first
//      BENCH_GPU_PARITY_TOKENS tokens of tasks/data/brown-perplexity.jsonl through the model's tokenizer, in
//      windows of at most 250 tokens, scored as `score` does: createLocalScorer) on cpu float32, device
//      float32 and device float16: max / mean |Δlogp| against cpu float32 and how many greedy (argmax) flags differ.
//  (c) half-precision layer bodies: buildScoringGraph(ckpt, edits, { precision: 'float16', weightFiles }, layerBodies)
//      with layerBodies false (today's half graphs) and true, on the device, at BENCH_GPU_DEPTHS layers of the
//      Qwen3-30B-A3B shape at tiny width (bench/syntheticCheckpoint.ts): graph build and session creation
//      seconds (wall and CPU) and whether the outputs are bit-identical between the layouts.
//  (d) throughput: one full-width OLMoE-1B-7B layer (hidden 2048, 64 experts, ffn 1024, top-8, vocab 50304,
//      BF16) on one BENCH_GPU_CONTEXT-token window: tokens/s of the engine as it ships (mapped weights,
//      openGraphSession) on the device in float16 and on the CPU in float32 at BENCH_GPU_THREADS threads,
//      first run (shaders compiled, buffers allocated) and second run, and |Δlogp| between them.
// Options (environment, or --name=value flags with the same name lower-cased without the prefix):
//   BENCH_GPU_DEVICE          webgpu          the device under test; cpu makes it a smoke test of the bench itself
//   BENCH_GPU_PARTS           device,parity,bodies,throughput
//   BENCH_GPU_SMOKE           0               1: small sizes (depths 2,4; tiny-width OLMoE, 128 tokens) for a 2-core machine
//   BENCH_GPU_DEPTHS          12,24,48        part (c) layer counts (a layout that exceeds its cap skips its larger ones)
//   BENCH_GPU_CONTEXT         2048            part (d) window
//   BENCH_GPU_PARITY_TOKENS   500             part (b) tokens
//   BENCH_GPU_THREADS         (all cores)     intra-op threads of every session
//   BENCH_GPU_BUDGET_SECONDS  420             the whole run: no child starts after it, each is capped to what is left
//   BENCH_GPU_CAP_SECONDS     150             one child's cap
//   BENCH_GPU_JSON_OUT        (none)          also write the final JSON there
//   BENCH_GPU_LOG             (none)          append every child's stderr there (Dawn's and onnxruntime's messages)
// The last line printed is one JSON object with every figure.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { runChild, type ChildResult } from './childProcess.ts'
import { REAL, tinyWidth, writeCheckpoint, type Config } from './syntheticCheckpoint.ts'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.dirname(HERE)
const BUILTIN = path.join(ROOT, 'models', 'tiny-moe')
const PARITY_TEXT = path.join(ROOT, 'tasks', 'data', 'brown-perplexity.jsonl')
/** The built-in model's context is 256 tokens (config max_position_embeddings); windows stay inside it. */
const PARITY_WINDOW = 250

type Device = 'cpu' | 'webgpu' | 'cuda'
type Precision = 'float32' | 'float16'

type Job =
  | { kind: 'device'; device: Device; threads: number }
  | { kind: 'parity'; device: Device; precision: Precision; threads: number; tokens: number; out: string }
  | { kind: 'bodies'; device: Device; threads: number; dir: string; layerBodies: boolean; out: string }
  | { kind: 'throughput'; device: Device; precision: Precision; threads: number; dir: string; context: number; out: string; home: string }

// ---------------------------------------------------------------- measuring children

const emit = (o: object) => console.log(JSON.stringify(o))

/** The error as data: a HarnessError's code and message (which quotes onnxruntime), or any other error's. */
function errorOf(e: unknown): { code: string; message: string } {
  const err = e as { code?: unknown; message?: unknown }
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`) // whole, into the log
  return { code: typeof err?.code === 'string' ? err.code : 'ERROR', message: String(err?.message ?? e).slice(0, 3000) }
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since)
  return (d.user + d.system) / 1e6
}

function statusBytes(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

function writeFloats(file: string, a: Float32Array): void {
  fs.writeFileSync(file, new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
}

/** The parity text: records of the Brown perplexity task joined until `tokens` tokens, as windows of PARITY_WINDOW. */
async function parityWindows(tokens: number): Promise<number[][]> {
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const tokenizer = openCheckpoint(BUILTIN).tokenizer()
  const ids: number[] = []
  for (const line of fs.readFileSync(PARITY_TEXT, 'utf8').split('\n')) {
    if (!line.trim()) continue
    ids.push(...tokenizer.encode(`${(JSON.parse(line) as { text: string }).text}\n\n`))
    if (ids.length >= tokens) break
  }
  const all = ids.slice(0, tokens)
  const windows: number[][] = []
  for (let i = 0; i < all.length; i += PARITY_WINDOW) windows.push(all.slice(i, i + PARITY_WINDOW))
  return windows.filter(w => w.length >= 2)
}

/** (a) Is the device there, can a session of the built-in model be created on it, and where did its nodes run. */
async function deviceChild(job: Extract<Job, { kind: 'device' }>): Promise<void> {
  const { checkDeviceAvailable, ORT_VERSION } = await import('../src/ort/ort.ts')
  emit({ phase: 'ort', version: ORT_VERSION })
  try {
    checkDeviceAvailable(job.device)
    emit({ phase: 'available', ok: true })
  } catch (e) {
    emit({ phase: 'available', ok: false, error: errorOf(e) })
    return
  }
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { emptyEdits } = await import('../src/edits/variantEdits.ts')
  const { createLocalScorer } = await import('../src/engine/scorer.ts')
  const { defaultPrecision } = await import('../src/engine/graphSession.ts')
  const ckpt = openCheckpoint(BUILTIN)
  const t0 = performance.now()
  let scorer: Awaited<ReturnType<typeof createLocalScorer>>
  try {
    scorer = await createLocalScorer(ckpt, emptyEdits(), { device: job.device, threads: job.threads })
    emit({ phase: 'session', ok: true, seconds: (performance.now() - t0) / 1000, precision: defaultPrecision(job.device) })
  } catch (e) {
    emit({ phase: 'session', ok: false, precision: defaultPrecision(job.device), error: errorOf(e) })
    return
  }
  try {
    const t1 = performance.now()
    const [r] = await scorer.score([{ prefix: Array.from({ length: 64 }, (_, i) => (i * 37 + 11) % ckpt.spec.vocabSize), branches: [], scorePrefixFrom: 1 }])
    emit({ phase: 'run', ok: true, seconds: (performance.now() - t1) / 1000, finite: r!.prefix.every(Number.isFinite) })
  } catch (e) {
    emit({ phase: 'run', ok: false, error: errorOf(e) })
  } finally {
    await scorer.release() // onnxruntime writes its profile when the session ends
  }
}

/** (b) Per-token log-probabilities and greedy flags of the parity text at one (device, precision). */
async function parityChild(job: Extract<Job, { kind: 'parity' }>): Promise<void> {
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { emptyEdits } = await import('../src/edits/variantEdits.ts')
  const { createLocalScorer } = await import('../src/engine/scorer.ts')
  const windows = await parityWindows(job.tokens)
  const ckpt = openCheckpoint(BUILTIN)
  const t0 = performance.now()
  const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: job.device, threads: job.threads, precision: job.precision })
  emit({ phase: 'session', seconds: (performance.now() - t0) / 1000 })
  try {
    const t1 = performance.now()
    const results = await scorer.score(windows.map(w => ({ prefix: w, branches: [], scorePrefixFrom: 1 })))
    const seconds = (performance.now() - t1) / 1000
    writeFloats(`${job.out}.logp`, Float32Array.from(results.flatMap(r => r.prefix)))
    fs.writeFileSync(`${job.out}.greedy`, Uint8Array.from(results.flatMap(r => r.prefixGreedy.map(Number))))
    emit({ phase: 'score', seconds, windows: windows.length, scored: results.reduce((n, r) => n + r.prefix.length, 0) })
  } finally {
    await scorer.release()
  }
}

/** (c) One layout of a float16 graph with mapped weights: build, session, and every output's bytes. */
async function bodiesChild(job: Extract<Job, { kind: 'bodies' }>): Promise<void> {
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { emptyEdits } = await import('../src/edits/variantEdits.ts')
  const { buildScoringGraph } = await import('../src/onnx/moeGraph.ts')
  const { createSession } = await import('../src/ort/ort.ts')
  const { packBatch } = await import('../src/engine/packing.ts')
  const { batchFeeds } = await import('../src/engine/scorer.ts')
  const ckpt = openCheckpoint(job.dir)
  // Computed tensors (here: BF16 weights rounded to float16) in a file of the child's, mapped as the engine maps them.
  const derived = `${job.out}.derived.bin`
  fs.writeFileSync(derived, new Uint8Array(0))
  const weightFiles = {
    base: '/',
    appendDerived(bytes: Uint8Array) {
      const size = fs.statSync(derived).size
      const offset = Math.ceil(size / 64) * 64
      fs.appendFileSync(derived, new Uint8Array(offset - size))
      fs.appendFileSync(derived, bytes)
      return { location: path.relative('/', derived), offset }
    },
  }
  let t = performance.now()
  const built = buildScoringGraph(ckpt, emptyEdits(), { precision: 'float16', weightFiles }, job.layerBodies)
  emit({ phase: 'graph', seconds: (performance.now() - t) / 1000, modelBytes: built.model.byteLength })
  t = performance.now()
  const cpu = process.cpuUsage()
  const session = await createSession({ ...built, external: new Map(), externalFolder: '/' }, { device: job.device, threads: job.threads })
  emit({ phase: 'session', seconds: (performance.now() - t) / 1000, cpuSeconds: cpuSeconds(cpu) })
  try {
    const V = ckpt.spec.vocabSize
    const row = (seed: number) => Array.from({ length: 64 }, (_, i) => (i * 131 + seed * 17) % V)
    const requests = [{ prefix: row(1), branches: [], scorePrefixFrom: 1 }, { prefix: row(2).slice(0, 40), branches: [row(3).slice(0, 5), row(4).slice(0, 3)], scorePrefixFrom: 1 }]
    t = performance.now()
    const out = await session.run(batchFeeds(packBatch(requests, [0, 1])))
    const seconds = (performance.now() - t) / 1000
    const parts = Object.keys(out).sort().map(name => {
      const d = out[name]!.data
      return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
    })
    fs.writeFileSync(`${job.out}.outputs`, Buffer.concat(parts))
    writeFloats(`${job.out}.logp`, out.logprobs!.data as Float32Array)
    emit({ phase: 'run', seconds, outputs: Object.keys(out).sort() })
  } finally {
    await session.release()
    fs.rmSync(derived, { force: true })
  }
}

/** (d) The engine as it ships on one window: session, a first and a second run, log-probabilities and greedy flags. */
async function throughputChild(job: Extract<Job, { kind: 'throughput' }>): Promise<void> {
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { emptyEdits } = await import('../src/edits/variantEdits.ts')
  const { openGraphSession } = await import('../src/engine/graphSession.ts')
  const { packBatch } = await import('../src/engine/packing.ts')
  const { batchFeeds } = await import('../src/engine/scorer.ts')
  const { mulberry32 } = await import('../src/util/rng.ts')
  emit({ phase: 'baseline', baselineRssBytes: statusBytes('VmRSS') })
  const ckpt = openCheckpoint(job.dir)
  let t = performance.now()
  const session = await openGraphSession(ckpt, emptyEdits(), {}, { device: job.device, threads: job.threads, precision: job.precision, cacheDir: job.home })
  emit({ phase: 'session', seconds: (performance.now() - t) / 1000 })
  try {
    const rng = mulberry32(7)
    const ids = Array.from({ length: job.context + 1 }, () => Math.floor(rng() * ckpt.spec.vocabSize))
    const feeds = batchFeeds(packBatch([{ prefix: ids, branches: [], scorePrefixFrom: 1 }], [0]))
    t = performance.now()
    await session.run(feeds, ['logprobs', 'greedy'])
    emit({ phase: 'first', seconds: (performance.now() - t) / 1000 })
    t = performance.now()
    const out = await session.run(feeds, ['logprobs', 'greedy'])
    emit({ phase: 'second', seconds: (performance.now() - t) / 1000, tokens: job.context })
    writeFloats(`${job.out}.logp`, out.logprobs!.data as Float32Array)
    fs.writeFileSync(`${job.out}.greedy`, out.greedy!.data as Uint8Array)
  } finally {
    await session.release()
  }
  emit({ phase: 'end', peakRssBytes: statusBytes('VmHWM') })
}

// ---------------------------------------------------------------- parent

function option(name: string, fallback: string): string {
  const flag = process.argv.find(a => a.startsWith(`--${name}=`))
  if (flag) return flag.slice(name.length + 3)
  return process.env[`BENCH_GPU_${name.toUpperCase().replace(/-/g, '_')}`] ?? fallback
}
const list = (s: string) => s.split(',').map(x => x.trim()).filter(Boolean)
const round = (x: number | null | undefined, digits = 3) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(digits)))
const num = (o: Record<string, unknown> | undefined, k: string) => (o && typeof o[k] === 'number' ? (o[k] as number) : null)

interface Settings {
  device: Device; threads: number; cap: number; deadline: number; log?: string; work: string
  /** Part (a) timed out on the device (a hang in the driver or Dawn): later device children are skipped, not waited for. */
  deviceHung?: boolean
}

/** Seconds of the budget left. */
const left = (s: Settings) => (s.deadline - performance.now()) / 1000

/** Runs one child job under min(cap, budget left); null when the budget is spent (the caller records the skip). */
async function child(s: Settings, job: Job, label: string, env: NodeJS.ProcessEnv = {}): Promise<ChildResult | null> {
  const cap = Math.min(s.cap, Math.floor(left(s)))
  if (cap < 10 || (s.deviceHung && job.device !== 'cpu')) return null
  const log = s.log
  if (log) fs.appendFileSync(log, `\n===== ${label} (${new Date().toISOString()}, cap ${cap} s)\n`)
  const r = await runChild(process.execPath, ['--import', 'tsx', path.join(HERE, 'gpu.bench.ts')],
    // A fresh harness home per child: no graph-cache hit turns a cold build into a warm one, nothing written to the user's.
    { ...process.env, MOE_HARNESS_HOME: fs.mkdtempSync(path.join(s.work, 'home-')), ...env, GPU_BENCH_CHILD: JSON.stringify(job) }, cap, log ? chunk => fs.appendFileSync(log, chunk) : undefined)
  return { ...r, cap } as ChildResult & { cap: number }
}

const skipped = (s: Settings) => ({
  skipped: s.deviceHung ? `part (a) timed out on ${s.device}: no further ${s.device} session is tried` : `the run's budget (BENCH_GPU_BUDGET_SECONDS) was spent: ${Math.max(0, Math.floor(left(s)))} s left`,
})

/** What went wrong with a child, if anything: timed out (during the first phase it did not finish) or failed. */
function trouble(r: ChildResult, phases: string[]): Record<string, unknown> {
  const during = phases.find(k => !r.phases[k])
  if (r.timedOut) return { timedOut: { capSeconds: (r as ChildResult & { cap: number }).cap, during } }
  if (r.exitCode !== 0) return { failed: { exitCode: r.exitCode, during, ...(r.phases.error ? { error: r.phases.error.error } : { stderr: r.stderrTail }) } }
  return {}
}

function readFloats(file: string): Float32Array | null {
  if (!fs.existsSync(file)) return null
  return new Float32Array(Uint8Array.from(fs.readFileSync(file)).buffer)
}

/** max / mean |a - b| and, given both greedy files, how many greedy flags differ. */
function compare(a: string, b: string): Record<string, number | null> | null {
  const x = readFloats(`${a}.logp`), y = readFloats(`${b}.logp`)
  if (!x || !y || x.length !== y.length || x.length === 0) return null
  let max = 0, sum = 0, nonfinite = 0
  for (let i = 0; i < x.length; i++) {
    const e = Math.abs(x[i]! - y[i]!)
    if (!Number.isFinite(e)) { nonfinite++; continue }
    max = Math.max(max, e)
    sum += e
  }
  const out: Record<string, number | null> = { scored: x.length, maxAbsDiff: Number(max.toPrecision(3)), meanAbsDiff: Number((sum / x.length).toPrecision(3)), nonfinite }
  if (fs.existsSync(`${a}.greedy`) && fs.existsSync(`${b}.greedy`)) {
    const g = fs.readFileSync(`${a}.greedy`), h = fs.readFileSync(`${b}.greedy`)
    out.greedyDiffer = g.length === h.length ? g.reduce((n, v, i) => n + (v !== h[i] ? 1 : 0), 0) : null
  }
  return out
}

interface ProfileEvent { cat?: string; name?: string; args?: { op_name?: string; provider?: string } }

/** Nodes per execution provider and the op types each ran, from onnxruntime's profile JSON(s) under `prefix`. */
function summarizeProfile(prefix: string): Record<string, { nodes: number; ops: Record<string, number> }> | null {
  const dir = path.dirname(prefix), base = path.basename(prefix)
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter(f => f.startsWith(base) && f.endsWith('.json')) : []
  if (!files.length) return null
  const nodes = new Map<string, { op: string; provider: string }>()
  for (const f of files) {
    let events: ProfileEvent[]
    try { events = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as ProfileEvent[] } catch { continue }
    for (const e of events) {
      if (e.cat !== 'Node' || !e.args?.provider || !e.name) continue
      nodes.set(e.name.replace(/_(kernel_time|fence_before|fence_after)$/, ''), { op: e.args.op_name ?? '?', provider: e.args.provider })
    }
  }
  const byProvider: Record<string, { nodes: number; ops: Record<string, number> }> = {}
  for (const { op, provider } of nodes.values()) {
    const p = (byProvider[provider] ??= { nodes: 0, ops: {} })
    p.nodes++
    p.ops[op] = (p.ops[op] ?? 0) + 1
  }
  return byProvider
}

async function devicePart(s: Settings) {
  const profile = path.join(s.work, 'profile', 'device')
  fs.mkdirSync(path.dirname(profile), { recursive: true })
  const r = await child(s, { kind: 'device', device: s.device, threads: s.threads }, '(a) device', { MOE_HARNESS_ORT_PROFILE: profile })
  if (!r) return skipped(s)
  if (r.timedOut && s.device !== 'cpu') s.deviceHung = true
  const p = r.phases
  const row: Record<string, unknown> = {
    ort: p.ort?.version ?? null,
    available: p.available ?? null, session: p.session ?? null, run: p.run ?? null,
    nodesByProvider: summarizeProfile(profile),
    ...trouble(r, ['ort', 'available', 'session', 'run']),
  }
  const err = (x: unknown) => (x && typeof x === 'object' && 'error' in x ? ` ${JSON.stringify((x as { error: unknown }).error)}` : '')
  console.log(`(a) ${s.device}: onnxruntime ${row.ort ?? '-'}; device available ${p.available?.ok ?? '-'}${err(p.available)}; tiny-moe session (${p.session?.precision ?? '-'}) ${p.session?.ok ?? '-'} ${round(num(p.session, 'seconds')) ?? ''}${err(p.session)}; ` +
    `run ${p.run?.ok ?? '-'}${err(p.run)}; nodes by provider ${JSON.stringify(Object.fromEntries(Object.entries(summarizeProfile(profile) ?? {}).map(([k, v]) => [k, v.nodes])))}` +
    `${'timedOut' in row || 'failed' in row ? ` ${JSON.stringify(row.timedOut ?? row.failed)}` : ''}`)
  return row
}

async function parityPart(s: Settings, tokens: number) {
  const runs: [string, Device, Precision][] = [['cpuFloat32', 'cpu', 'float32'], [`${s.device}Float32`, s.device, 'float32'], [`${s.device}Float16`, s.device, 'float16']]
  const out: Record<string, unknown> = { model: 'models/tiny-moe', text: path.relative(ROOT, PARITY_TEXT), tokens, window: PARITY_WINDOW }
  for (const [name, device, precision] of runs) {
    const r = await child(s, { kind: 'parity', device, precision, threads: s.threads, tokens, out: path.join(s.work, `parity-${name}`) }, `(b) parity ${name}`)
    out[name] = r ? { sessionSeconds: round(num(r.phases.session, 'seconds')), scoreSeconds: round(num(r.phases.score, 'seconds')), scored: num(r.phases.score, 'scored'), ...trouble(r, ['session', 'score']) } : skipped(s)
  }
  const base = path.join(s.work, 'parity-cpuFloat32')
  out.vsCpuFloat32 = Object.fromEntries(runs.slice(1).map(([name]) => [name, compare(path.join(s.work, `parity-${name}`), base)]))
  out.float16VsFloat32OnDevice = compare(path.join(s.work, `parity-${s.device}Float16`), path.join(s.work, `parity-${s.device}Float32`))
  const v = out.vsCpuFloat32 as Record<string, Record<string, number> | null>
  console.log(`(b) parity, ${tokens} tokens of tiny-moe: ` + runs.slice(1).map(([name]) => `${name} vs cpuFloat32 max |Δlogp| ${v[name]?.maxAbsDiff ?? '-'} mean ${v[name]?.meanAbsDiff ?? '-'} greedy differ ${v[name]?.greedyDiffer ?? '-'}`).join('; ') +
    runs.map(([name]) => { const x = out[name] as Record<string, unknown>; return 'skipped' in x || 'failed' in x || 'timedOut' in x ? `; ${name}: ${JSON.stringify(x)}` : '' }).join(''))
  return out
}

async function bodiesPart(s: Settings, depths: number[]) {
  const rows: Record<string, unknown>[] = []
  const exceeded = new Set<boolean>()
  for (const layers of depths) {
    if (left(s) < 20) { rows.push({ config: 'qwen3', layers, ...skipped(s) }); continue }
    const config: Config = { ...tinyWidth(REAL.qwen3!.config), num_hidden_layers: layers }
    const dir = path.join(s.work, `qwen3-L${layers}`)
    const bytes = await writeCheckpoint(dir, config, 11)
    const row: Record<string, unknown> = { config: 'qwen3', model: REAL.qwen3!.model, layers, experts: config.num_experts, hidden: config.hidden_size, checkpointBytes: bytes }
    for (const layerBodies of [false, true]) {
      const key = layerBodies ? 'layerBodies' : 'mainGraph'
      if (exceeded.has(layerBodies)) { row[key] = { skipped: 'a smaller depth of this layout exceeded its cap' }; continue }
      const out = path.join(s.work, `bodies-L${layers}-${key}`)
      const r = await child(s, { kind: 'bodies', device: s.device, threads: s.threads, dir, layerBodies, out }, `(c) layer bodies ${layerBodies} L${layers}`)
      if (!r) { row[key] = skipped(s); continue }
      if (r.timedOut) exceeded.add(layerBodies)
      const graph = num(r.phases.graph, 'seconds'), session = num(r.phases.session, 'seconds')
      row[key] = {
        graphSeconds: round(graph), sessionSeconds: round(session), sessionCpuSeconds: round(num(r.phases.session, 'cpuSeconds')),
        buildPlusSessionSeconds: round(graph !== null && session !== null ? graph + session : null), runSeconds: round(num(r.phases.run, 'seconds')),
        modelBytes: num(r.phases.graph, 'modelBytes'), ...trouble(r, ['graph', 'session', 'run']),
      }
    }
    const a = path.join(s.work, `bodies-L${layers}-mainGraph.outputs`), b = path.join(s.work, `bodies-L${layers}-layerBodies.outputs`)
    row.bitIdentical = fs.existsSync(a) && fs.existsSync(b) ? fs.readFileSync(a).equals(fs.readFileSync(b)) : null
    row.logprobs = compare(path.join(s.work, `bodies-L${layers}-layerBodies`), path.join(s.work, `bodies-L${layers}-mainGraph`))
    fs.rmSync(dir, { recursive: true, force: true })
    rows.push(row)
    const m = row.mainGraph as Record<string, unknown>, l = row.layerBodies as Record<string, unknown>
    const note = (x: Record<string, unknown>) => ('skipped' in x ? ` (${x.skipped})` : 'timedOut' in x ? ` TIMED OUT ${JSON.stringify(x.timedOut)}` : 'failed' in x ? ` FAILED ${JSON.stringify(x.failed)}` : '')
    console.log(`(c) float16 qwen3 L${layers} E${config.num_experts} on ${s.device}: main graph build ${m.graphSeconds ?? '-'} s + session ${m.sessionSeconds ?? '-'} s${note(m)}; ` +
      `layer bodies build ${l.graphSeconds ?? '-'} s + session ${l.sessionSeconds ?? '-'} s${note(l)}; bit-identical ${row.bitIdentical ?? '-'} (max |Δlogp| ${(row.logprobs as Record<string, number> | null)?.maxAbsDiff ?? '-'})`)
  }
  return rows
}

async function throughputPart(s: Settings, context: number, smoke: boolean) {
  const real = REAL.olmoe!.config
  const config: Config = { ...(smoke ? { ...tinyWidth(real), vocab_size: 512 } : real), num_hidden_layers: 1 }
  if (left(s) < 40) return skipped(s) // writing the checkpoint alone takes seconds at full width
  const dir = path.join(s.work, 'olmoe-full-L1')
  const t0 = performance.now()
  const bytes = await writeCheckpoint(dir, config, 13)
  const row: Record<string, unknown> = {
    config: 'olmoe', model: REAL.olmoe!.model, layers: 1, hidden: config.hidden_size, experts: config.num_experts, vocab: config.vocab_size, checkpointBytes: bytes,
    writeSeconds: round((performance.now() - t0) / 1000), contextTokens: context, threads: s.threads,
  }
  const runs: [string, Device, Precision][] = [[`${s.device}Float16`, s.device, 'float16'], ['cpuFloat32', 'cpu', 'float32']]
  for (const [name, device, precision] of runs) {
    const home = fs.mkdtempSync(path.join(s.work, 'home-'))
    const r = await child(s, { kind: 'throughput', device, precision, threads: s.threads, dir, context, out: path.join(s.work, `tp-${name}`), home }, `(d) throughput ${name}`)
    fs.rmSync(home, { recursive: true, force: true })
    if (!r) { row[name] = skipped(s); continue }
    const second = num(r.phases.second, 'seconds')
    row[name] = {
      sessionSeconds: round(num(r.phases.session, 'seconds')), firstRunSeconds: round(num(r.phases.first, 'seconds')), secondRunSeconds: round(second),
      tokensPerSecond: round(second ? context / second : null, 1), peakRssBytes: num(r.phases.end, 'peakRssBytes') ?? (r.polledPeakRssBytes || null),
      ...trouble(r, ['baseline', 'session', 'first', 'second', 'end']),
    }
  }
  fs.rmSync(dir, { recursive: true, force: true })
  const g = row[`${s.device}Float16`] as Record<string, number | null>, c = row.cpuFloat32 as Record<string, number | null>
  row.deviceOverCpu = round(g.tokensPerSecond && c.tokensPerSecond ? g.tokensPerSecond / c.tokensPerSecond : null)
  row.parity = compare(path.join(s.work, `tp-${s.device}Float16`), path.join(s.work, 'tp-cpuFloat32'))
  const note = (x: Record<string, unknown>) => ('skipped' in x ? ` (${x.skipped})` : 'timedOut' in x ? ` TIMED OUT ${JSON.stringify(x.timedOut)}` : 'failed' in x ? ` FAILED ${JSON.stringify(x.failed)}` : '')
  console.log(`(d) olmoe L1 d${config.hidden_size} E${config.num_experts} V${config.vocab_size}, ${context} tokens: ${s.device} float16 ${g.tokensPerSecond ?? '-'} tok/s (session ${g.sessionSeconds ?? '-'} s, first run ${g.firstRunSeconds ?? '-'} s)${note(g)}; ` +
    `cpu float32 x${s.threads} ${c.tokensPerSecond ?? '-'} tok/s (session ${c.sessionSeconds ?? '-'} s)${note(c)}; ratio ${row.deviceOverCpu ?? '-'}; max |Δlogp| ${(row.parity as Record<string, number> | null)?.maxAbsDiff ?? '-'}, greedy differ ${(row.parity as Record<string, number> | null)?.greedyDiffer ?? '-'}`)
  return row
}

/** A part's own failure (a bug of this file, a full disk) is recorded like a child's and the next part runs. */
async function guarded<T>(name: string, f: () => Promise<T>): Promise<T | { failed: { error: string } }> {
  try {
    return await f()
  } catch (e) {
    console.log(`(${name}) FAILED: ${(e as Error)?.stack ?? String(e)}`)
    return { failed: { error: String((e as Error)?.message ?? e) } }
  }
}

async function main(): Promise<void> {
  const device = option('device', 'webgpu') as Device
  if (!['cpu', 'webgpu', 'cuda'].includes(device)) throw new Error(`bench:gpu: --device must be webgpu, cuda or cpu, got '${device}'`)
  const smoke = option('smoke', '0') === '1'
  const parts = list(option('parts', 'device,parity,bodies,throughput'))
  const budget = Number(option('budget-seconds', '420'))
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-bench-gpu-'))
  const log = option('log', '') || undefined
  const s: Settings = { device, threads: Number(option('threads', String(os.cpus().length))), cap: Number(option('cap-seconds', '150')), deadline: performance.now() + budget * 1000, log, work }
  const context = Number(option('context', smoke ? '128' : '2048'))
  const depths = list(option('depths', smoke ? '2,4' : '12,24,48')).map(Number)
  const t0 = performance.now()
  try {
    const deviceCheck = parts.includes('device') ? await guarded('a', () => devicePart(s)) : null
    const parity = parts.includes('parity') ? await guarded('b', () => parityPart(s, Number(option('parity-tokens', '500')))) : null
    // (d) before (c): the deepest builds of (c) are the part most likely to meet the budget's end.
    const throughput = parts.includes('throughput') ? await guarded('d', () => throughputPart(s, context, smoke)) : null
    const layerBodies = parts.includes('bodies') ? await guarded('c', () => bodiesPart(s, depths)) : null
    const result = {
      benchmark: 'gpu', device, smoke, cpus: os.cpus().length, threads: s.threads, memoryBytes: os.totalmem(), budgetSeconds: budget, capSeconds: s.cap,
      deviceCheck, parity, layerBodies, throughput, totalSeconds: 0,
    }
    result.totalSeconds = round((performance.now() - t0) / 1000, 1)!
    const json = JSON.stringify(result)
    const out = option('json-out', '')
    if (out) fs.writeFileSync(out, `${json}\n`)
    console.log(json)
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

const job = process.env.GPU_BENCH_CHILD ? (JSON.parse(process.env.GPU_BENCH_CHILD) as Job) : null
if (job) {
  // The error as a JSON line, so the parent records onnxruntime's words rather than the end of a stack trace.
  try {
    if (job.kind === 'device') await deviceChild(job)
    else if (job.kind === 'parity') await parityChild(job)
    else if (job.kind === 'bodies') await bodiesChild(job)
    else await throughputChild(job)
  } catch (e) {
    emit({ phase: 'error', error: errorOf(e) })
    process.exitCode = 1
  }
} else await main()
