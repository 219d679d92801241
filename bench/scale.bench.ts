// npm run bench:scale: how the scoring engine copes with real MoE sizes (issue 10 §1), measured on
// synthetic random BF16 checkpoints in the exact shapes of four published configs, each against a
// PyTorch eager forward of the same files and tokens in the same run (bench/peers/torch_moe.py):
//  (a) depth: full layer and expert counts at tiny width (hidden 64) - graph build seconds, session
//      creation seconds, graph nodes (counted inside If/Loop bodies and local functions too) and
//      model bytes, at 2/4/8/12/24/48 layers of the Qwen3-30B-A3B
//      shape (growth) and at full depth of the others; the peer's load time and both engines' forward on
//      a short window as ratios. Every measurement runs in a child process killed at a cap: a
//      measurement over the cap is reported as timed out at that cap, with nothing extrapolated.
//      The same build again in the same MOE_HARNESS_HOME (the graph then comes from the on-disk cache),
//      and a second variant whose edits rewrite one MoE layer's experts, as a ratio to the first build.
//  (b) width: real hidden / heads / experts / expert ffn / vocab with 1 layer (DeepSeek-V2-Lite 2: its
//      layer 0 is dense; BENCH_SCALE_WIDTH_LAYERS=16 with olmoe is the whole OLMoE-1B-7B), one
//      2048-token window - tokens/s, build seconds, peak RSS (VmHWM of the measuring child) for the
//      engine as it ships (weights mapped), the float32-resident engine it replaced
//      (MOE_HARNESS_WEIGHTS=memory) and the peer, and their ratios; plus the largest |logprob
//      difference| between them, which shows all ran the same model. Runs that would not fit in
//      MemAvailable are skipped and say so.
//  (c) calibration (opt-in: BENCH_SCALE_PARTS=calibration): collectStats over the papers' 128 x 2048
//      windows (random tokens) at full width - seconds, tokens/s, peak RSS.
//  (d) method (opt-in: BENCH_SCALE_PARTS=method): magnitude pruning (ratio 0.5, every routed expert
//      matrix edited) applied and published as a sweep does it, at full width - seconds and peak RSS
//      with the edits stored as they accumulate (as shipped) and held in memory as float32
//      (MOE_HARNESS_SPILL_MB=Infinity: the engine before stored overrides), when that fits.
//  (e) tasks (opt-in: BENCH_SCALE_PARTS=tasks; bench/scaleTasks.ts): the built-in suite's multiple-choice
//      requests at full width, the engine as the harness scores them (a context once for all its
//      choices, the head only at scored positions) against the peer scoring them as lm-eval's HF
//      backend does (context + choice per choice, log-softmax over every position) - seconds and
//      tokens/s per task, their ratio, and the largest |logprob difference|.
// Each measurement is its own child process, so peak RSS is that of one worker doing that one
// thing; `baselineRssBytes` is the child's RSS before it loads anything (the runtime's fixed part).
// The peer maps the safetensors files (np.memmap, as the safetensors package does), so its peak
// counts the file pages it read plus its float32 copies; the engine's counts whatever it keeps.
// Options (environment, or --name=value flags with the same name lower-cased without the prefix,
// e.g. --configs=qwen3,olmoe --cap-seconds=60):
//   BENCH_SCALE_CONFIGS        olmoe,qwen3,deepseek,mixtral   which shapes
//   BENCH_SCALE_PARTS          depth,width                    which parts (and calibration)
//   BENCH_SCALE_DEPTHS         2,4,8,12,24,48                 Qwen3-30B-A3B layer counts of part (a); once one
//                                                             exceeds the cap the larger ones are skipped
//   BENCH_SCALE_CAP_SECONDS    90                             part (a) cap per child process (engine or peer)
//   BENCH_SCALE_WIDTH_CAP_SECONDS 420                         part (b) cap per child process
//   BENCH_SCALE_THREADS        2                              intra-op threads, a list (e.g. 1,2)
//   BENCH_SCALE_CONTEXT        2048                           tokens of the part (b) window
//   BENCH_SCALE_SHORT          64                             tokens of the part (a) forward and the warm-ups
//   BENCH_SCALE_VOCAB          real                           part (b) vocab: real, or a number
//   BENCH_SCALE_WIDTH_LAYERS   (1; DeepSeek 2)                part (b) layer count
//   BENCH_SCALE_SMOKE          0                              1: tiny width in part (b) and depths capped at 2 (development)
//   BENCH_SCALE_PYTHON         /usr/bin/python3               Debian's python3 with python3-torch
//   BENCH_SCALE_OPENBLAS       (found)                        folder with OpenBLAS's libblas.so.3 for the peer only
//   BENCH_SCALE_MEMORY_GUARD   1                              0: run part (b) engines and peers even when their measured need exceeds MemAvailable
//   BENCH_SCALE_WEIGHTS        mapped                         part (a) engine: mapped (as shipped) or memory (float32-resident)
//   BENCH_SCALE_CALIBRATION_SEQUENCES 128                     part (c) windows (of BENCH_SCALE_CONTEXT tokens)
//   BENCH_SCALE_CALIBRATION_NEEDS routing,expertOutputs,inputNorms  part (c) statistics
//   BENCH_SCALE_CALIBRATION_CAP_SECONDS 1800                  part (c) cap
//   BENCH_SCALE_METHOD_LAYERS  2,4                            part (d) layer counts (olmoe: 16 is the whole model)
//   BENCH_SCALE_METHOD_CAP_SECONDS 1800                       part (d) cap
//   BENCH_SCALE_TASKS_CONFIGS  olmoe                          part (e) shapes
//   BENCH_SCALE_TASKS_LAYERS   4                              part (e) layer count at full width
//   BENCH_SCALE_TASKS_NAMES    brown-cloze,brown-next-sentence,brown-agreement  part (e) tasks
//   BENCH_SCALE_TASKS_DOCS     24                             part (e) documents per task (the first ones)
//   BENCH_SCALE_TASKS_CAP_SECONDS 1800                        part (e) cap per child process
//   BENCH_SCALE_TASKS_PEER_WEIGHTS auto                       part (e) peer: float32 copies, or cast-on-use (kept
//                                                             as stored, cast when read); auto: float32 if it fits
// The last line printed is one JSON object with every figure and the machine's load average.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema } from 'onnx-buf'
import { mulberry32 } from '../src/util/rng.ts'
import { runChild, type ChildResult } from './childProcess.ts'
import { REAL, tensorPlan, tinyWidth, writeCheckpoint, type Config } from './syntheticCheckpoint.ts'
import { findOpenBlas, TORCH_PEER_SCRIPT, torchPeerEnv } from './peers/torchPeer.ts'
import { tasksChild, tasksPart, type TasksJob } from './scaleTasks.ts'

// ---------------------------------------------------------------- measuring child (the engine)

interface NodeLike { attribute: { g?: { node: NodeLike[] }; graphs: { node: NodeLike[] }[] }[] }

/** Nodes including those inside control-flow bodies (If / Loop / Scan attributes), at any depth. */
function countNodes(nodes: readonly NodeLike[]): number {
  let n = 0
  for (const node of nodes) {
    n++
    for (const a of node.attribute) {
      if (a.g) n += countNodes(a.g.node)
      for (const sub of a.graphs) n += countNodes(sub.node)
    }
  }
  return n
}

/**
 * weights: 'mapped' is the engine as it ships (checkpoint files mapped in their stored dtype, graph cache);
 * 'memory' is the float32-resident engine from before (every weight decoded to float32 and copied in).
 * secondVariant: after the forward, build a second variant whose edits rewrite one MoE layer's experts
 * (as a merge does), and time its graph + session.
 */
interface ChildJob { dir: string; threads: number; tokens: string; warmup: number; out?: string; weights: 'mapped' | 'memory'; secondVariant?: boolean; home: string }

function statusBytes(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

/**
 * One engine measurement: open the checkpoint, build the scoring graph, create the session, run a
 * warm-up window and the timed window. Each phase prints a JSON line as soon as it ends, so a child
 * killed at the cap still reports what it finished. Imports happen here, not at the top, so the
 * parent never loads onnxruntime and `baselineRssBytes` is measured before any model work.
 */
async function engineChild(job: ChildJob): Promise<void> {
  const emit = (o: object) => console.log(JSON.stringify(o))
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { emptyEdits } = await import('../src/edits/variantEdits.ts')
  const { buildScoringGraph } = await import('../src/onnx/moeGraph.ts')
  const { storedScoringGraph } = await import('../src/onnx/graphStore.ts')
  const { createSession } = await import('../src/ort/ort.ts')
  const { packBatch } = await import('../src/engine/packing.ts')
  const { batchFeeds } = await import('../src/engine/scorer.ts')
  emit({ phase: 'baseline', baselineRssBytes: statusBytes('VmRSS') })
  let t = performance.now()
  const lap = () => { const s = (performance.now() - t) / 1000; t = performance.now(); return s }
  const ckpt = openCheckpoint(job.dir)
  emit({ phase: 'open', seconds: lap() })
  type Edits = ReturnType<typeof emptyEdits>
  const build = (edits: Edits) => (job.weights === 'mapped' ? storedScoringGraph(ckpt, edits, {}, job.home) : buildScoringGraph(ckpt, edits))
  const graph = build(emptyEdits())
  const graphSeconds = lap()
  const proto = fromBinary(ModelProtoSchema, graph.model)
  const externalBytes = [...graph.external.values()].reduce((s, b) => s + b.byteLength, 0)
  emit({
    phase: 'graph', seconds: graphSeconds, nodes: countNodes(proto.graph?.node ?? []), topLevelNodes: proto.graph?.node.length ?? 0,
    functionNodes: proto.functions.reduce((s, f) => s + countNodes(f.node), 0), modelBytes: graph.model.byteLength, externalBytes,
    fromCache: 'fromCache' in graph ? graph.fromCache : false,
  })
  lap()
  // onnxruntime's optimized graph is kept beside a cached graph (ort.ts optimizedCacheDir), so the cached
  // run of part (a) shows session creation without graph optimizations; CPU seconds are what a loaded
  // machine cannot stretch (creation is single-threaded).
  type Kept = { model: Uint8Array; external: Map<string, Uint8Array>; externalFolder?: string; dir?: string; temporary?: boolean }
  const keep = (g: Kept) => (g.dir && !g.temporary ? { ...g, optimizedCacheDir: g.dir } : g)
  let cpu = process.cpuUsage()
  const cpuLap = () => { const d = process.cpuUsage(cpu); cpu = process.cpuUsage(); return (d.user + d.system) / 1e6 }
  const session = await createSession(keep(graph), { device: 'cpu', threads: job.threads })
  emit({ phase: 'session', seconds: lap(), cpuSeconds: cpuLap(), fromOptimizedCache: session.fromOptimizedCache ?? false })
  const ids = Array.from(new BigInt64Array(Uint8Array.from(fs.readFileSync(job.tokens)).buffer), Number)
  const run = async (tokens: number[]) => {
    const batch = packBatch([{ prefix: tokens, branches: [], scorePrefixFrom: 1 }], [0])
    const out = await session.run(batchFeeds(batch), ['logprobs'])
    return out.logprobs.data as Float32Array
  }
  if (job.warmup > 0) {
    lap()
    await run(ids.slice(0, job.warmup))
    emit({ phase: 'warmup', seconds: lap() })
  }
  lap()
  const logprobs = await run(ids)
  const seconds = lap()
  if (job.out) fs.writeFileSync(job.out, new Uint8Array(logprobs.buffer, logprobs.byteOffset, logprobs.byteLength))
  emit({ phase: 'forward', seconds, tokens: ids.length })
  emit({ phase: 'end', peakRssBytes: statusBytes('VmHWM') })
  if (job.secondVariant) {
    // One MoE layer's experts rewritten (halved): what a merge or a weight-pruning method edits.
    const layer = ckpt.spec.layers.findIndex(l => l.kind === 'moe')
    const edits = emptyEdits()
    for (const e of ckpt.names.layers[layer]!.experts ?? []) {
      for (const name of [e.gate, e.up, e.down]) edits.overrides[name] = ckpt.read(name).map(v => v / 2)
    }
    const editedBytes = Object.values(edits.overrides).reduce((a, o) => a + (o as Float32Array).byteLength / 2, 0)
    let variantEdits: Edits = edits
    let storeSeconds: number | undefined
    if (job.weights === 'mapped') {
      // As a sweep does it: the method's edits are stored in the checkpoint dtype and published as a
      // variant folder (the main process's transform time); a worker reads the folder and builds.
      const { spillOverrides } = await import('../src/edits/overrideSpill.ts')
      const { publishVariantFolder, readVariantFiles } = await import('../src/edits/variantFolder.ts')
      lap()
      spillOverrides(edits.overrides, n => ckpt.tensors.get(n)!.dtype)
      const folder = path.join(job.home, 'variants', `bench-${process.pid}`)
      publishVariantFolder(folder, ckpt.dir, edits, n => ckpt.tensors.get(n)!.dtype)
      storeSeconds = lap()
      variantEdits = readVariantFiles(folder).edits
    }
    lap()
    const second = build(variantEdits)
    const variantGraphSeconds = lap()
    cpuLap()
    const s2 = await createSession(keep(second), { device: 'cpu', threads: job.threads })
    emit({ phase: 'variant2', graphSeconds: variantGraphSeconds, sessionSeconds: lap(), sessionCpuSeconds: cpuLap(), editedBytes, ...(storeSeconds !== undefined ? { storeSeconds } : {}) })
    const { sharedWeightInputs, weightInputFeeds } = await import('../src/onnx/moeGraph.ts')
    const names = job.weights === 'mapped' ? sharedWeightInputs(ckpt, variantEdits, 'float32') : undefined
    if (names) {
      // As a sweep's worker scores variants that change only these tensors (poolWorker.ts planFor): one
      // session with them as inputs, built once; every further ratio is its tensors read and fed.
      const { spillOverrides } = await import('../src/edits/overrideSpill.ts')
      const { publishVariantFolder, readVariantFiles } = await import('../src/edits/variantFolder.ts')
      const quartered = emptyEdits()
      for (const name of names) quartered.overrides[name] = ckpt.read(name).map(v => v / 4)
      spillOverrides(quartered.overrides, n => ckpt.tensors.get(n)!.dtype)
      const folder = path.join(job.home, 'variants', `bench-${process.pid}-quartered`)
      publishVariantFolder(folder, ckpt.dir, quartered, n => ckpt.tensors.get(n)!.dtype)
      lap()
      cpuLap()
      const sharedGraph = storedScoringGraph(ckpt, emptyEdits(), { weightInputs: names }, job.home)
      const sharedGraphSeconds = lap()
      const s3 = await createSession(keep(sharedGraph), { device: 'cpu', threads: job.threads })
      const sharedSessionSeconds = lap()
      const feedsOf = (e: Edits) => Object.fromEntries(Object.entries(weightInputFeeds(ckpt, e, names)).map(([k, f]) => [k, { type: 'float32' as const, ...f }]))
      const feeds = feedsOf(readVariantFiles(folder).edits)
      const nextRatioSeconds = lap()
      // The shared session scores the halved variant exactly as its own session does.
      const batch = packBatch([{ prefix: ids.slice(0, job.warmup || 64), branches: [], scorePrefixFrom: 1 }], [0])
      const own = (await s2.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
      const fed = (await s3.run({ ...batchFeeds(batch), ...feedsOf(variantEdits) }, ['logprobs'])).logprobs.data as Float32Array
      const quarter = (await s3.run({ ...batchFeeds(batch), ...feeds }, ['logprobs'])).logprobs.data as Float32Array
      emit({
        phase: 'shared', tensors: names.length, graphSeconds: sharedGraphSeconds, sessionSeconds: sharedSessionSeconds, nextRatioSeconds,
        maxAbsDiffVsOwnSession: own.reduce((m, v, i) => Math.max(m, Math.abs(v - fed[i]!)), 0), ratiosDiffer: quarter.some((v, i) => v !== fed[i]),
      })
      await s3.release()
    }
    await s2.release()
  }
  await session.release()
}

interface CalibrationJob { calibration: true; dir: string; threads: number; sequences: number; length: number; needs: string[]; home: string }
interface MethodJob { method: true; dir: string; home: string }

/**
 * One method measurement (part d): magnitude pruning at ratio 0.5 over every routed expert matrix,
 * applied, accounted and published as a variant folder exactly as a sweep prepares a variant. The
 * spill budget comes from MOE_HARNESS_SPILL_MB in the environment. Prints seconds, edited tensors
 * and how many were stored, and peak RSS.
 */
async function methodChild(job: MethodJob): Promise<void> {
  const emit = (o: object) => console.log(JSON.stringify(o))
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { loadMethod, resolveParams } = await import('../src/methods/registry.ts')
  const { applyMethod } = await import('../src/methods/applyMethod.ts')
  const { accountVariant } = await import('../src/variants/accounting.ts')
  const { contentHash } = await import('../src/edits/variantEdits.ts')
  const { isStoredOverride } = await import('../src/edits/overrideTensor.ts')
  const { publishVariantFolder } = await import('../src/edits/variantFolder.ts')
  emit({ phase: 'baseline', baselineRssBytes: statusBytes('VmRSS') })
  const ckpt = openCheckpoint(job.dir)
  const method = await loadMethod('magnitude-pruning')
  const t0 = performance.now()
  const applied = await applyMethod(method, resolveParams(method, { ratio: 0.5 }), ckpt, undefined, 'bench')
  const applySeconds = (performance.now() - t0) / 1000
  const accounting = accountVariant(ckpt, applied.edits)
  const hash = contentHash(applied.edits)
  publishVariantFolder(path.join(job.home, 'variants', hash), ckpt.dir, applied.edits, n => ckpt.tensors.get(n)!.dtype)
  const overrides = Object.values(applied.edits.overrides)
  emit({
    phase: 'method', applySeconds, seconds: (performance.now() - t0) / 1000, edited: overrides.length, stored: overrides.filter(isStoredOverride).length,
    nonzeroFraction: accounting.nonzeroParams / accounting.totalParams,
  })
  emit({ phase: 'end', peakRssBytes: statusBytes('VmHWM') })
}

/**
 * One calibration measurement (issue 10 §5): the statistics the methods ask for, over `sequences`
 * random windows of `length` tokens (the papers' 128 x 2048 by default), through the engine's own
 * collectStats (one window per batch at 2048 tokens). Prints seconds, tokens and peak RSS.
 */
async function calibrationChild(job: CalibrationJob): Promise<void> {
  const emit = (o: object) => console.log(JSON.stringify(o))
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { collectStats } = await import('../src/calibration/collect.ts')
  emit({ phase: 'baseline', baselineRssBytes: statusBytes('VmRSS') })
  const ckpt = openCheckpoint(job.dir)
  const rng = mulberry32(17)
  const windows = Array.from({ length: job.sequences }, () => Array.from({ length: job.length }, () => Math.floor(rng() * ckpt.spec.vocabSize)))
  const t0 = performance.now()
  let last = t0
  type Need = Parameters<typeof collectStats>[2][number]
  const needs = job.needs as Need[]
  const stats = await collectStats(ckpt, windows, needs, { key: 'bench', needs, source: 'random tokens (bench)', sequences: job.sequences, length: job.length }, {
    device: 'cpu', threads: job.threads, cacheDir: job.home,
    onProgress: (done, total) => {
      if (performance.now() - last > 30_000) { last = performance.now(); emit({ phase: 'progress', done, total, seconds: (last - t0) / 1000, peakRssBytes: statusBytes('VmHWM') }) }
    },
  })
  emit({ phase: 'calibration', seconds: (performance.now() - t0) / 1000, tokens: stats.info.tokens })
  emit({ phase: 'end', peakRssBytes: statusBytes('VmHWM') })
}

// ---------------------------------------------------------------- parent

const HERE = path.dirname(fileURLToPath(import.meta.url))

function option(name: string, fallback: string): string {
  const flag = process.argv.find(a => a.startsWith(`--${name}=`))
  if (flag) return flag.slice(name.length + 3)
  return process.env[`BENCH_SCALE_${name.toUpperCase().replace(/-/g, '_')}`] ?? fallback
}
const list = (s: string) => s.split(',').map(x => x.trim()).filter(Boolean)



interface Settings { cap: number; threads: number[]; short: number; python: string; openblas: string | null; memoryGuard: boolean }

async function engine(dir: string, threads: number, tokens: string, warmup: number, cap: number, opts: { out?: string; weights?: 'mapped' | 'memory'; secondVariant?: boolean; home?: string } = {}): Promise<ChildResult> {
  // A fresh MOE_HARNESS_HOME unless given: a graph cache entry must not turn a cold build into a hit.
  const home = opts.home ?? fs.mkdtempSync(path.join(os.tmpdir(), 'moe-scale-home-'))
  try {
    const job: ChildJob = { dir, threads, tokens, warmup, out: opts.out, weights: opts.weights ?? (option('weights', 'mapped') as 'mapped' | 'memory'), secondVariant: opts.secondVariant, home }
    return await runChild(process.execPath, ['--import', 'tsx', path.join(HERE, 'scale.bench.ts')],
      { ...process.env, SCALE_BENCH_CHILD: JSON.stringify(job), MOE_HARNESS_HOME: home }, cap)
  } finally {
    if (!opts.home) fs.rmSync(home, { recursive: true, force: true })
  }
}

function peer(s: Settings, dir: string, threads: number, tokens: string, warmup: number, out?: string): Promise<ChildResult> {
  const env = torchPeerEnv(s.openblas, threads)
  const args = [TORCH_PEER_SCRIPT, '--model', dir, '--tokens', tokens, '--threads', String(threads), '--warmup', String(warmup)]
  if (out) args.push('--out', out)
  return runChild(s.python, args, env, s.cap)
}

const num = (o: Record<string, unknown> | undefined, k: string) => (o && typeof o[k] === 'number' ? (o[k] as number) : null)
const ratio = (a: number | null, b: number | null) => (a !== null && b !== null && b > 0 ? a / b : null)
const round = (x: number | null, digits = 3) => (x === null ? null : Number(x.toFixed(digits)))

/** The phases an engine child emits, in order ('warmup' only with a warm-up, 'variant2' and 'shared' only with secondVariant). */
const ENGINE_PHASES = ['open', 'graph', 'session', 'warmup', 'forward', 'end', 'variant2', 'shared'] as const
/** The phases that measure the first build and forward: a child stopped after them (during the second variant) still measured those. */
const FIRST_BUILD_PHASES: readonly string[] = ENGINE_PHASES.slice(0, ENGINE_PHASES.indexOf('end') + 1)

/**
 * What a child finished, and for the phase it was in when it stopped, that it hit the cap: the phase after
 * the last one it emitted, skipping 'warmup' for a child run without one (`warmup` tokens 0), so a child
 * stopped during its forward or its second variant is not reported as stopped 'during warmup'.
 */
function summarizeEngine(r: ChildResult, cap: number, warmup: number) {
  const p = r.phases
  const last = ENGINE_PHASES.reduce((at, k, i) => (p[k] ? i : at), -1)
  const unfinished = ENGINE_PHASES.slice(last + 1).find(k => k !== 'warmup' || warmup > 0)
  return {
    graphSeconds: round(num(p.graph, 'seconds')), sessionSeconds: round(num(p.session, 'seconds')), sessionCpuSeconds: round(num(p.session, 'cpuSeconds')),
    sessionFromOptimizedCache: p.session?.fromOptimizedCache ?? null,
    nodes: num(p.graph, 'nodes'), topLevelNodes: num(p.graph, 'topLevelNodes'), functionNodes: num(p.graph, 'functionNodes'), modelBytes: num(p.graph, 'modelBytes'), externalBytes: num(p.graph, 'externalBytes'),
    graphFromCache: p.graph?.fromCache ?? null,
    warmupSeconds: round(num(p.warmup, 'seconds')), forwardSeconds: round(num(p.forward, 'seconds')),
    ...(p.variant2 ? { secondVariant: { graphSeconds: round(num(p.variant2, 'graphSeconds')), sessionSeconds: round(num(p.variant2, 'sessionSeconds')), sessionCpuSeconds: round(num(p.variant2, 'sessionCpuSeconds')), editedBytes: num(p.variant2, 'editedBytes'), storeSeconds: round(num(p.variant2, 'storeSeconds')) } } : {}),
    ...(p.shared ? {
      sharedWeightInputs: {
        tensors: num(p.shared, 'tensors'), graphSeconds: round(num(p.shared, 'graphSeconds')), sessionSeconds: round(num(p.shared, 'sessionSeconds')),
        nextRatioSeconds: round(num(p.shared, 'nextRatioSeconds'), 4), maxAbsDiffVsOwnSession: num(p.shared, 'maxAbsDiffVsOwnSession'), ratiosDiffer: p.shared.ratiosDiffer ?? null,
      },
    } : {}),
    peakRssBytes: num(p.end, 'peakRssBytes') ?? (r.polledPeakRssBytes || null), baselineRssBytes: num(p.baseline, 'baselineRssBytes'),
    ...(r.timedOut ? { timedOut: { capSeconds: cap, during: unfinished } } : {}),
    ...(!r.timedOut && r.exitCode !== 0 ? { failed: { exitCode: r.exitCode, during: unfinished, stderr: r.stderrTail } } : {}),
  }
}

/** The BLAS libraries the first peer that finished had mapped (the same for every peer of a run). */
let peerBlas: unknown = null

function summarizePeer(r: ChildResult, cap: number) {
  const p = r.phases.result
  peerBlas ??= p?.blas ?? null
  return {
    loadSeconds: round(num(r.phases.load, 'seconds')), warmupSeconds: round(num(r.phases.warmup, 'seconds')), forwardSeconds: round(num(r.phases.forward, 'seconds')),
    peakRssBytes: num(p, 'peakRssBytes') ?? (r.polledPeakRssBytes || null), baselineRssBytes: num(p, 'baselineRssBytes'),
    torch: p?.torch ?? null,
    ...(r.timedOut ? { timedOut: { capSeconds: cap, during: ['load', 'warmup', 'forward'].find(k => !r.phases[k]) } } : {}),
    ...(!r.timedOut && r.exitCode !== 0 ? { failed: { exitCode: r.exitCode, stderr: r.stderrTail } } : {}),
  }
}

function writeTokens(file: string, n: number, vocab: number, seed: number): void {
  const rng = mulberry32(seed)
  fs.writeFileSync(file, new Uint8Array(BigInt64Array.from({ length: n }, () => BigInt(Math.floor(rng() * vocab))).buffer))
}

function compareLogprobs(a: string, b: string): { maxAbsDiff: number; meanAbsDiff: number } | null {
  if (!fs.existsSync(a) || !fs.existsSync(b)) return null
  const x = new Float32Array(Uint8Array.from(fs.readFileSync(a)).buffer), y = new Float32Array(Uint8Array.from(fs.readFileSync(b)).buffer)
  if (x.length !== y.length || x.length === 0) return null
  let max = 0, sum = 0
  for (let i = 0; i < x.length; i++) { const e = Math.abs(x[i] - y[i]); max = Math.max(max, e); sum += e }
  return { maxAbsDiff: Number(max.toPrecision(3)), meanAbsDiff: Number((sum / x.length).toPrecision(3)) }
}

const mb = (b: number | null) => (b === null ? '-' : `${(b / 2 ** 20).toFixed(0)} MB`)
const sec = (x: number | null) => (x === null ? '-' : `${x.toFixed(1)} s`)

async function depthPart(s: Settings, names: string[], depths: number[], smoke: boolean, work: string) {
  const rows: Record<string, unknown>[] = []
  const cases: [string, number][] = []
  for (const name of names) {
    if (name === 'qwen3') for (const L of smoke ? [2] : depths) cases.push([name, L])
    else cases.push([name, REAL[name].config.num_hidden_layers as number])
  }
  const exceeded = new Set<string>()
  for (const [name, fullLayers] of cases) {
    const layers = smoke ? Math.min(fullLayers, 2) : fullLayers
    const config: Config = { ...tinyWidth(REAL[name].config), num_hidden_layers: layers }
    const tag = `${name}-L${layers}`
    if (exceeded.has(name)) {
      // The same shape with fewer layers already passed the cap: running it would only burn the cap again.
      rows.push({ config: name, model: REAL[name].model, layers, experts: expertsOf(config), skipped: `a smaller depth of ${name} already exceeded the ${s.cap} s cap` })
      console.log(`(a) ${tag}: skipped (a smaller depth exceeded the cap)`)
      continue
    }
    const dir = path.join(work, tag)
    const bytes = await writeCheckpoint(dir, config, 11)
    const tokens = path.join(work, `${tag}.tokens`)
    writeTokens(tokens, s.short, config.vocab_size as number, 5)
    const threads = s.threads[s.threads.length - 1]
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-scale-home-'))
    const e = summarizeEngine(await engine(dir, threads, tokens, 0, s.cap, { home, secondVariant: true }), s.cap, 0)
    // Stopped at the cap during its second variant, the child still measured the first build and forward.
    const firstBuildDone = !('timedOut' in e) || !FIRST_BUILD_PHASES.includes(e.timedOut!.during!)
    // The same build again in the same MOE_HARNESS_HOME: the graph comes from the on-disk cache.
    const warm = firstBuildDone ? summarizeEngine(await engine(dir, threads, tokens, 0, s.cap, { home }), s.cap, 0) : null
    fs.rmSync(home, { recursive: true, force: true })
    const p = summarizePeer(await peer(s, dir, threads, tokens, 0), s.cap)
    fs.rmSync(dir, { recursive: true, force: true })
    if (!firstBuildDone) exceeded.add(name)
    const buildPlusSession = e.graphSeconds !== null && e.sessionSeconds !== null ? e.graphSeconds + e.sessionSeconds : null
    const row = {
      config: name, model: REAL[name].model, layers, experts: expertsOf(config), checkpointBytes: bytes, threads, tokens: s.short,
      engine: e, engineCachedGraph: warm ? { graphSeconds: warm.graphSeconds, sessionSeconds: warm.sessionSeconds, sessionCpuSeconds: warm.sessionCpuSeconds, graphFromCache: warm.graphFromCache, sessionFromOptimizedCache: warm.sessionFromOptimizedCache } : null, peer: p,
      ratios: {
        buildPlusSessionOverPeerLoad: round(ratio(buildPlusSession, p.loadSeconds)), forwardPeerOverEngine: round(ratio(p.forwardSeconds, e.forwardSeconds)),
        secondVariantOverFirst: round(ratio(e.secondVariant ? (e.secondVariant.graphSeconds ?? 0) + (e.secondVariant.sessionSeconds ?? 0) : null, buildPlusSession)),
        // A further ratio of the same edited tensors in the session those variants share (what a sweep's
        // worker does for magnitude pruning / Wanda within sharedWeightInputs' bounds).
        nextRatioSharedOverFirst: round(ratio(e.sharedWeightInputs?.nextRatioSeconds ?? null, buildPlusSession), 4),
      },
    }
    rows.push(row)
    console.log(`(a) ${tag} E${expertsOf(config)}: graph ${sec(e.graphSeconds)} (${e.nodes ?? '-'} nodes, ${mb(e.modelBytes)} + ${mb(e.externalBytes)} external), session ${sec(e.sessionSeconds)}` +
      `${'timedOut' in e ? ` TIMED OUT at ${s.cap} s during ${e.timedOut!.during}` : ''}${'failed' in e ? ` FAILED during ${e.failed!.during}: ${e.failed!.stderr}` : ''}; ` +
      `session CPU ${sec(e.sessionCpuSeconds)}; cached graph ${sec(row.engineCachedGraph?.graphSeconds ?? null)} + session ${sec(row.engineCachedGraph?.sessionSeconds ?? null)} (CPU ${sec(row.engineCachedGraph?.sessionCpuSeconds ?? null)}${row.engineCachedGraph?.sessionFromOptimizedCache ? ', optimized graph kept' : ''}); second variant / first ${row.ratios.secondVariantOverFirst ?? '-'}` +
      `${e.sharedWeightInputs ? ` (own session; shared by its ${e.sharedWeightInputs.tensors} edited tensors: graph ${sec(e.sharedWeightInputs.graphSeconds)} + session ${sec(e.sharedWeightInputs.sessionSeconds)} once, then ${e.sharedWeightInputs.nextRatioSeconds} s per ratio = ${row.ratios.nextRatioSharedOverFirst} of first, |Δlogp| vs own ${e.sharedWeightInputs.maxAbsDiffVsOwnSession})` : ''}; ` +
      `peer load ${sec(p.loadSeconds)}, ${s.short}-token forward engine ${sec(e.forwardSeconds)} vs peer ${sec(p.forwardSeconds)}`)
  }
  return rows
}

function expertsOf(c: Config): number {
  return (c.num_experts ?? c.num_local_experts ?? c.n_routed_experts) as number
}

/**
 * Peak RSS over the checkpoint's BF16 bytes, as measured (with a margin), by what runs: the
 * float32-resident engine 4.2-6.1x (measured November 2026), the peer ~3x (its float32 copies and the mapped
 * file), the mapped engine the checkpoint once plus activations (a 2048-token window: ~1-2.5 GB on these shapes).
 */
const MEMORY_NEED = {
  memory: (bytes: number) => 5.5 * bytes,
  peer: (bytes: number) => 3.5 * bytes + 2 * 2 ** 30,
  mapped: (bytes: number) => 1.15 * bytes + 3 * 2 ** 30,
}

function memAvailableBytes(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))
  return m ? Number(m[1]) * 1024 : os.freemem()
}

async function widthPart(s: Settings, names: string[], context: number, vocabOpt: string, layersOpt: string, smoke: boolean, work: string) {
  const rows: Record<string, unknown>[] = []
  for (const name of names) {
    const real = REAL[name].config
    const layers = layersOpt ? Number(layersOpt) : name === 'deepseek' ? 2 : 1
    const vocab = vocabOpt === 'real' ? (real.vocab_size as number) : Number(vocabOpt)
    const config: Config = { ...(smoke ? tinyWidth(real) : real), num_hidden_layers: Math.min(layers, real.num_hidden_layers as number), vocab_size: smoke ? 512 : vocab }
    const tag = `${name}-full-L${config.num_hidden_layers}`
    const dir = path.join(work, tag)
    const planned = tensorPlan(config).reduce((sum, [, shape]) => sum + 2 * shape.reduce((a, b) => a * b, 1), 0)
    // Machines are shared: a child the kernel's OOM killer meets may take someone else's process with it.
    const fits = (what: keyof typeof MEMORY_NEED) => !s.memoryGuard || MEMORY_NEED[what](planned) <= memAvailableBytes()
    const skipNote = (what: keyof typeof MEMORY_NEED) => `skipped: needs about ${mb(MEMORY_NEED[what](planned))} for the ${mb(planned)} checkpoint, ${mb(memAvailableBytes())} available; BENCH_SCALE_MEMORY_GUARD=0 runs it anyway`
    if (!fits('mapped')) {
      rows.push({ config: name, model: REAL[name].model, layers: config.num_hidden_layers, hidden: config.hidden_size, experts: expertsOf(config), vocab: config.vocab_size, checkpointBytes: planned, skipped: skipNote('mapped') })
      console.log(`(b) ${tag}: ${skipNote('mapped')}`)
      continue
    }
    const t0 = performance.now()
    const bytes = await writeCheckpoint(dir, config, 13)
    const writeSeconds = (performance.now() - t0) / 1000
    const tokens = path.join(work, `${tag}.tokens`)
    writeTokens(tokens, context, config.vocab_size as number, 7)
    for (const [ti, threads] of s.threads.entries()) {
      const out = (who: string) => path.join(work, `${tag}-t${threads}.${who}.f32`)
      const e = summarizeEngine(await engine(dir, threads, tokens, s.short, s.cap, { out: out('engine'), secondVariant: ti === 0 }), s.cap, s.short)
      const m = fits('memory') ? summarizeEngine(await engine(dir, threads, tokens, s.short, s.cap, { out: out('memory'), weights: 'memory' }), s.cap, s.short) : { skipped: skipNote('memory') }
      const p = fits('peer') ? summarizePeer(await peer(s, dir, threads, tokens, s.short, out('peer')), s.cap) : { skipped: skipNote('peer') }
      const tps = (x: { forwardSeconds?: number | null }) => (x.forwardSeconds ? context / x.forwardSeconds : null)
      const eTps = tps(e), mTps = 'skipped' in m ? null : tps(m), pTps = 'skipped' in p ? null : tps(p)
      const buildOf = (x: { graphSeconds?: number | null; sessionSeconds?: number | null }) => (x.graphSeconds != null && x.sessionSeconds != null ? x.graphSeconds + x.sessionSeconds : null)
      const engineBuild = buildOf(e)
      const peakOf = (x: object) => ('peakRssBytes' in x ? (x.peakRssBytes as number | null) : null)
      const row = {
        config: name, model: REAL[name].model, layers: config.num_hidden_layers, hidden: config.hidden_size, experts: expertsOf(config), vocab: config.vocab_size,
        checkpointBytes: bytes, writeSeconds: round(writeSeconds), threads, contextTokens: context,
        engine: { ...e, tokensPerSecond: round(eTps, 1) },
        engineFloat32Resident: 'skipped' in m ? m : { ...m, tokensPerSecond: round(mTps, 1) },
        peer: 'skipped' in p ? p : { ...p, tokensPerSecond: round(pTps, 1) },
        parity: { engineVsPeer: compareLogprobs(out('engine'), out('peer')), engineVsFloat32Resident: compareLogprobs(out('engine'), out('memory')) },
        ratios: {
          tokensPerSecondEngineOverPeer: round(ratio(eTps, pTps)),
          tokensPerSecondEngineOverFloat32Resident: round(ratio(eTps, mTps)),
          peakRssEngineOverCheckpoint: round(ratio(e.peakRssBytes, bytes)),
          peakRssEngineAboveBaselineOverCheckpoint: round(ratio(e.peakRssBytes !== null && e.baselineRssBytes !== null ? e.peakRssBytes - e.baselineRssBytes : null, bytes)),
          peakRssFloat32ResidentOverCheckpoint: round(ratio(peakOf(m), bytes)),
          peakRssPeerOverCheckpoint: round(ratio(peakOf(p), bytes)),
          peakRssEngineOverPeer: round(ratio(e.peakRssBytes, peakOf(p))),
          engineBuildOverPeerLoad: round(ratio(engineBuild, 'skipped' in p ? null : p.loadSeconds)),
          secondVariantOverFirst: round(ratio(e.secondVariant ? buildOf(e.secondVariant) : null, engineBuild)),
        },
      }
      rows.push(row)
      const failed = (x: object) => ('timedOut' in x ? ` TIMED OUT during ${(x.timedOut as { during?: string }).during}` : '') + ('failed' in x ? ` FAILED: ${JSON.stringify(x.failed)}` : '') + ('skipped' in x ? ` (${x.skipped})` : '')
      console.log(`(b) ${tag} d${config.hidden_size} E${expertsOf(config)} V${config.vocab_size} (${mb(bytes)}), ${threads} thread(s), ${context} tokens: ` +
        `engine ${round(eTps, 1) ?? '-'} tok/s, build ${sec(engineBuild)}, peak ${mb(e.peakRssBytes)} (${row.ratios.peakRssEngineOverCheckpoint ?? '-'}x)${failed(e)}; ` +
        `float32-resident ${round(mTps, 1) ?? '-'} tok/s, peak ${mb(peakOf(m))}${failed(m)}; ` +
        `peer ${round(pTps, 1) ?? '-'} tok/s, peak ${mb(peakOf(p))}${failed(p)}; ` +
        `engine/peer ${row.ratios.tokensPerSecondEngineOverPeer ?? '-'}, engine/f32-resident ${row.ratios.tokensPerSecondEngineOverFloat32Resident ?? '-'}, second variant/first ${row.ratios.secondVariantOverFirst ?? '-'}, ` +
        `max |dlogp| vs peer ${row.parity.engineVsPeer?.maxAbsDiff ?? '-'}, vs f32-resident ${row.parity.engineVsFloat32Resident?.maxAbsDiff ?? '-'}`)
      for (const who of ['engine', 'memory', 'peer']) fs.rmSync(out(who), { force: true })
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return rows
}

/** (c) calibration at full width: the default 128 x 2048 windows through collectStats, time and peak RSS. */
async function calibrationPart(s: Settings, names: string[], sequences: number, length: number, needs: string[], layersOpt: string, smoke: boolean, work: string) {
  const rows: Record<string, unknown>[] = []
  for (const name of names) {
    const real = REAL[name].config
    const layers = layersOpt ? Number(layersOpt) : name === 'deepseek' ? 2 : 1
    const config: Config = { ...(smoke ? tinyWidth(real) : real), num_hidden_layers: Math.min(layers, real.num_hidden_layers as number), vocab_size: smoke ? 512 : real.vocab_size }
    const tag = `${name}-calib-L${config.num_hidden_layers}`
    const planned = tensorPlan(config).reduce((sum, [, shape]) => sum + 2 * shape.reduce((a, b) => a * b, 1), 0)
    if (s.memoryGuard && MEMORY_NEED.mapped(planned) > memAvailableBytes()) {
      rows.push({ config: name, layers: config.num_hidden_layers, skipped: `needs about ${mb(MEMORY_NEED.mapped(planned))}, ${mb(memAvailableBytes())} available` })
      continue
    }
    const dir = path.join(work, tag)
    const bytes = await writeCheckpoint(dir, config, 19)
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-scale-home-'))
    const threads = s.threads[s.threads.length - 1]
    const job: CalibrationJob = { calibration: true, dir, threads, sequences, length, needs, home }
    const r = await runChild(process.execPath, ['--import', 'tsx', path.join(HERE, 'scale.bench.ts')], { ...process.env, SCALE_BENCH_CHILD: JSON.stringify(job), MOE_HARNESS_HOME: home }, s.cap)
    fs.rmSync(home, { recursive: true, force: true })
    fs.rmSync(dir, { recursive: true, force: true })
    const seconds = num(r.phases.calibration, 'seconds'), tokens = num(r.phases.calibration, 'tokens')
    const peak = num(r.phases.end, 'peakRssBytes') ?? (r.polledPeakRssBytes || null)
    const row = {
      config: name, model: REAL[name].model, layers: config.num_hidden_layers, checkpointBytes: bytes, threads, sequences, length, needs,
      seconds: round(seconds, 1), tokensPerSecond: round(ratio(tokens, seconds), 1), peakRssBytes: peak, peakRssOverCheckpoint: round(ratio(peak, bytes)),
      ...(r.timedOut ? { timedOut: { capSeconds: s.cap, progress: r.phases.progress ?? null } } : {}),
      ...(!r.timedOut && r.exitCode !== 0 ? { failed: { exitCode: r.exitCode, stderr: r.stderrTail } } : {}),
    }
    rows.push(row)
    console.log(`(c) ${tag} (${mb(bytes)}), ${sequences} x ${length} tokens, needs ${needs.join('+')}: ${sec(row.seconds)}, ${row.tokensPerSecond ?? '-'} tok/s, peak ${mb(peak)} (${row.peakRssOverCheckpoint ?? '-'}x)` +
      `${r.timedOut ? ` TIMED OUT at ${s.cap} s` : ''}${'failed' in row ? ` FAILED: ${r.stderrTail}` : ''}`)
  }
  return rows
}

async function methodPart(s: Settings, names: string[], layerCounts: number[], smoke: boolean, work: string) {
  const rows: Record<string, unknown>[] = []
  for (const name of names) {
    for (const layers of layerCounts) {
      const real = REAL[name].config
      const config: Config = { ...(smoke ? tinyWidth(real) : real), num_hidden_layers: Math.min(layers, real.num_hidden_layers as number), vocab_size: smoke ? 512 : real.vocab_size }
      const tag = `${name}-method-L${config.num_hidden_layers}`
      const planned = tensorPlan(config).reduce((sum, [, shape]) => sum + 2 * shape.reduce((a, b) => a * b, 1), 0)
      if (s.memoryGuard && MEMORY_NEED.mapped(planned) > memAvailableBytes()) {
        rows.push({ config: name, layers: config.num_hidden_layers, skipped: `needs about ${mb(MEMORY_NEED.mapped(planned))}, ${mb(memAvailableBytes())} available` })
        continue
      }
      const dir = path.join(work, tag)
      const bytes = await writeCheckpoint(dir, config, 23)
      const row: Record<string, unknown> = { config: name, model: REAL[name].model, layers: config.num_hidden_layers, checkpointBytes: bytes }
      // Stored as shipped; then held as float32 (the engine before stored overrides) when 2x the BF16
      // expert bytes plus the checkpoint fit (the guard keeps the machine from swapping).
      for (const [mode, budget] of [['stored', ''], ['held', 'Infinity']] as const) {
        if (mode === 'held' && s.memoryGuard && 3 * bytes > memAvailableBytes()) {
          row[mode] = { skipped: `holding every edited tensor as float32 needs about ${mb(3 * bytes)}, ${mb(memAvailableBytes())} available` }
          continue
        }
        const home = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-scale-home-'))
        const job: MethodJob = { method: true, dir, home }
        const env = { ...process.env, SCALE_BENCH_CHILD: JSON.stringify(job), MOE_HARNESS_HOME: home, ...(budget ? { MOE_HARNESS_SPILL_MB: budget } : {}) }
        const r = await runChild(process.execPath, ['--import', 'tsx', path.join(HERE, 'scale.bench.ts')], env, s.cap)
        fs.rmSync(home, { recursive: true, force: true })
        const peak = num(r.phases.end, 'peakRssBytes') ?? (r.polledPeakRssBytes || null)
        row[mode] = {
          seconds: round(num(r.phases.method, 'seconds'), 1), applySeconds: round(num(r.phases.method, 'applySeconds'), 1),
          edited: num(r.phases.method, 'edited'), stored: num(r.phases.method, 'stored'), nonzeroFraction: round(num(r.phases.method, 'nonzeroFraction'), 4),
          peakRssBytes: peak, peakRssOverCheckpoint: round(ratio(peak, bytes)), baselineRssBytes: num(r.phases.baseline, 'baselineRssBytes'),
          ...(r.timedOut ? { timedOut: { capSeconds: s.cap } } : {}),
          ...(!r.timedOut && r.exitCode !== 0 ? { failed: { exitCode: r.exitCode, stderr: r.stderrTail } } : {}),
        }
        const m = row[mode] as Record<string, unknown>
        console.log(`(d) ${tag} (${mb(bytes)}) magnitude-pruning 0.5, edits ${mode}: ${sec(m.seconds as number | null)}, ${m.stored}/${m.edited} stored, peak ${mb(peak)} (${m.peakRssOverCheckpoint ?? '-'}x)` +
          `${r.timedOut ? ` TIMED OUT at ${s.cap} s` : ''}${m.failed ? ` FAILED: ${r.stderrTail}` : ''}`)
      }
      fs.rmSync(dir, { recursive: true, force: true })
      rows.push(row)
    }
  }
  return rows
}

async function main(): Promise<void> {
  const names = list(option('configs', 'olmoe,qwen3,deepseek,mixtral'))
  for (const n of names) if (!REAL[n]) throw new Error(`bench:scale: unknown config '${n}'; choose from ${Object.keys(REAL).join(', ')}`)
  const parts = list(option('parts', 'depth,width'))
  const smoke = option('smoke', '0') === '1'
  const s: Settings = {
    cap: Number(option('cap-seconds', '90')),
    threads: list(option('threads', '2')).map(Number),
    short: Number(option('short', '64')),
    python: option('python', '/usr/bin/python3'),
    openblas: findOpenBlas(option('openblas', '')),
    memoryGuard: option('memory-guard', '1') !== '0',
  }
  const context = Number(option('context', smoke ? '128' : '2048'))
  const depths = list(option('depths', '2,4,8,12,24,48')).map(Number)
  if (!s.openblas) console.log('warning: no OpenBLAS found for the peer (install libopenblas0-pthread, or set BENCH_SCALE_OPENBLAS); the reference BLAS makes a meaningless peer')
  const load = [os.loadavg()]
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-bench-scale-'))
  const t0 = performance.now()
  try {
    const depth = parts.includes('depth') ? await depthPart(s, names, depths, smoke, work) : []
    load.push(os.loadavg())
    const width = parts.includes('width') ? await widthPart({ ...s, cap: Number(option('width-cap-seconds', '420')) }, names, context, option('vocab', 'real'), option('width-layers', ''), smoke, work) : []
    load.push(os.loadavg())
    const calibration = parts.includes('calibration')
      ? await calibrationPart({ ...s, cap: Number(option('calibration-cap-seconds', '1800')) }, names, Number(option('calibration-sequences', smoke ? '4' : '128')), smoke ? 128 : context,
        list(option('calibration-needs', 'routing,expertOutputs,inputNorms')), option('width-layers', ''), smoke, work)
      : []
    load.push(os.loadavg())
    const method = parts.includes('method')
      ? await methodPart({ ...s, cap: Number(option('method-cap-seconds', '1800')) }, names, list(option('method-layers', smoke ? '2' : '2,4')).map(Number), smoke, work)
      : []
    load.push(os.loadavg())
    const tasks = parts.includes('tasks')
      ? await tasksPart({ ...s, cap: Number(option('tasks-cap-seconds', '1800')), memAvailableBytes, peerWeights: option('tasks-peer-weights', 'auto') as 'auto' | 'float32' | 'cast-on-use' }, list(option('tasks-configs', 'olmoe')), list(option('tasks-names', 'brown-cloze,brown-next-sentence,brown-agreement')),
        Number(option('tasks-docs', smoke ? '4' : '24')), Number(option('tasks-layers', smoke ? '2' : '4')), smoke, tinyWidth, work)
      : []
    load.push(os.loadavg())
    console.log(JSON.stringify({
      benchmark: 'scale', cpus: os.cpus().length, memoryBytes: os.totalmem(), smoke, capSeconds: { depth: s.cap, width: Number(option('width-cap-seconds', '420')) }, threads: s.threads,
      peer: { python: s.python, openblas: s.openblas, blasLoaded: peerBlas, malloc: 'glibc defaults for both (no MALLOC_* settings)' },
      loadAverage1m: { start: round(load[0][0], 2), afterDepth: round(load[1]?.[0] ?? null, 2), end: round(load[load.length - 1][0], 2) },
      totalSeconds: round((performance.now() - t0) / 1000, 1),
      sources: Object.fromEntries(names.map(n => [n, REAL[n].source])),
      depth, width, calibration, method, tasks,
    }))
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

const childJob = process.env.SCALE_BENCH_CHILD ? JSON.parse(process.env.SCALE_BENCH_CHILD) as ChildJob | CalibrationJob | MethodJob | TasksJob : null
if (childJob && 'tasks' in childJob) await tasksChild(childJob)
else if (childJob && 'calibration' in childJob) await calibrationChild(childJob)
else if (childJob && 'method' in childJob) await methodChild(childJob)
else if (childJob) await engineChild(childJob)
else await main()
