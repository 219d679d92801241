// Part (e) of `npm run bench:scale` (opt-in: BENCH_SCALE_PARTS=tasks): the harness's own job, zero-shot
// multiple-choice tasks, on a full-width checkpoint, against the PyTorch eager peer scoring the same
// requests the way lm-evaluation-harness's HF backend does (bench/peers/torch_moe.py --requests).
// Part (b) times one 2048-token window with every position scored, where both engines do the same
// float32 arithmetic; here the work differs as it does in use: the harness runs a context once for all
// of its choices (branches of one request, packing.ts) and computes the vocabulary head only at the
// scored positions, while lm-eval's HFLM runs context + choice once per choice and log-softmaxes every
// position. The requests are the built-in suite's (brown-cloze, brown-next-sentence, brown-agreement),
// tokenized by the built-in model's tokenizer, so their lengths are those of real prompts.
// Each engine runs in its own child process; the figures are seconds per task and "lm-eval tokens"
// per second: the tokens lm-eval's per-choice requests feed the model (TaskEvaluation.tokens.perChoiceEquivalent),
// the same count for both, so the tokens/s ratio is the ratio of seconds.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ScoreRequest } from '../src/engine/packing.ts'
import { runChild, type ChildResult } from './childProcess.ts'
import { TORCH_PEER_SCRIPT, torchPeerEnv } from './peers/torchPeer.ts'
import { REAL, tensorPlan, writeCheckpoint, type Config } from './syntheticCheckpoint.ts'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const BUILT_IN_MODEL = path.join(HERE, '..', 'models', 'tiny-moe')

/** The engine's measuring child: score each task's requests through the harness's in-process scorer. */
export interface TasksJob { tasks: true; dir: string; threads: number; requests: string; out: string; home: string }

interface TaskRequests {
  /** The harness's requests (one per context, its choices as branches). */
  requests: ScoreRequest[]
  docs: number
  /** Tokens the harness feeds the model (packedLength summed). */
  processedTokens: number
  /** Tokens lm-eval's per-choice requests feed the model. */
  lmEvalTokens: number
  /** Continuation tokens scored. */
  scoredTokens: number
}

/**
 * The first `docs` documents of each task as the harness turns them into requests (evaluateTask with a
 * scorer that records what it is asked and returns nothing), tokenized by the built-in model.
 */
export async function taskRequests(names: readonly string[], docs: number): Promise<Record<string, TaskRequests>> {
  const { loadTask, loadTaskDocs } = await import('../src/tasks/registry.ts')
  const { evaluateTask } = await import('../src/tasks/evaluate.ts')
  const { loadTokenizer } = await import('../src/model/tokenizer.ts')
  const { emptyResult } = await import('../src/engine/packing.ts')
  const tokenizer = loadTokenizer(BUILT_IN_MODEL, JSON.parse(fs.readFileSync(path.join(BUILT_IN_MODEL, 'config.json'), 'utf8')) as Record<string, unknown>)
  const out: Record<string, TaskRequests> = {}
  for (const name of names) {
    const task = await loadTask(name)
    const all = (await loadTaskDocs(task)).docs
    let requests: ScoreRequest[] = []
    const evaluation = await evaluateTask(task, all.slice(0, docs), {
      tokenizer, maxLength: 2048, score: async rs => { requests = [...rs]; return rs.map(emptyResult) },
    })
    const scoredTokens = requests.reduce((n, r) => n + r.branches.reduce((m, b) => m + b.length, 0) + (r.branches.length ? 0 : r.prefix.length - Math.max(1, r.scorePrefixFrom ?? r.prefix.length)), 0)
    out[name] = { requests, docs: Math.min(docs, all.length), processedTokens: evaluation.tokens.processed, lmEvalTokens: evaluation.tokens.perChoiceEquivalent, scoredTokens }
  }
  return out
}

/**
 * The engine child: open the checkpoint, build (or read from the graph cache) the scoring graph, create
 * the session, then per task score one request as a warm-up and all of them timed. Writes every scored
 * token's log-probability, in request order (a request's scored prefix, then each branch), to
 * `<out>.<task>`; prints one JSON line per phase.
 */
export async function tasksChild(job: TasksJob): Promise<void> {
  const emit = (o: object) => console.log(JSON.stringify(o))
  const { openCheckpoint } = await import('../src/model/checkpoint.ts')
  const { emptyEdits } = await import('../src/edits/variantEdits.ts')
  const { createLocalScorer } = await import('../src/engine/scorer.ts')
  let t = performance.now()
  const lap = () => { const s = (performance.now() - t) / 1000; t = performance.now(); return s }
  const ckpt = openCheckpoint(job.dir)
  const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: job.threads, cacheDir: job.home })
  emit({ phase: 'session', seconds: lap() })
  const spec = JSON.parse(fs.readFileSync(job.requests, 'utf8')) as { tasks: Record<string, { requests: ScoreRequest[] }> }
  for (const [name, task] of Object.entries(spec.tasks)) {
    await scorer.score(task.requests.slice(0, 1))
    lap()
    const results = await scorer.score(task.requests)
    const seconds = lap()
    const flat = results.flatMap(r => [...r.prefix, ...r.branches.flat()])
    fs.writeFileSync(`${job.out}.${name}`, new Uint8Array(Float32Array.from(flat).buffer))
    emit({ phase: `task:${name}`, seconds })
  }
  emit({ phase: 'end', peakRssBytes: Number(/^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024 })
  await scorer.release()
}

export interface TasksSettings { peerWeights: 'auto' | 'float32' | 'cast-on-use'; cap: number; threads: number[]; python: string; openblas: string | null; memoryGuard: boolean; memAvailableBytes: () => number }

const round = (x: number | null, digits = 3) => (x === null || !Number.isFinite(x) ? null : Number(x.toFixed(digits)))
const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`

function maxAbsDiff(a: string, b: string): number | null {
  if (!fs.existsSync(a) || !fs.existsSync(b)) return null
  const x = new Float32Array(Uint8Array.from(fs.readFileSync(a)).buffer), y = new Float32Array(Uint8Array.from(fs.readFileSync(b)).buffer)
  if (x.length !== y.length || x.length === 0) return null
  let max = 0
  for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!))
  return Number(max.toPrecision(3))
}

/**
 * Part (e): for each config, a full-width checkpoint of `layers` layers (`smoke`: tiny width), the
 * built-in suite's requests, the engine and the peer at each thread count; seconds, lm-eval tokens/s,
 * their ratio and the largest |log-probability difference| per task, and the totals over the suite.
 */
export async function tasksPart(s: TasksSettings, names: readonly string[], taskNames: readonly string[], docs: number, layers: number, smoke: boolean, tinyWidth: (c: Config) => Config, work: string) {
  const suite = await taskRequests(taskNames, docs)
  const requestsFile = path.join(work, 'task-requests.json')
  fs.writeFileSync(requestsFile, JSON.stringify({ batchTokens: 2048, tasks: Object.fromEntries(Object.entries(suite).map(([n, t]) => [n, { requests: t.requests, warmup: true }])) }))
  const rows: Record<string, unknown>[] = []
  for (const name of names) {
    const real = REAL[name]!.config
    const config: Config = { ...(smoke ? tinyWidth(real) : real), num_hidden_layers: Math.min(layers, real.num_hidden_layers as number), vocab_size: smoke ? 8192 : real.vocab_size }
    const planned = tensorPlan(config).reduce((sum, [, shape]) => sum + 2 * shape.reduce((a, b) => a * b, 1), 0)
    // The peer holds every weight as float32 beside the mapped file (part (b)'s MEMORY_NEED.peer); where
    // that does not fit, it keeps them as stored and casts each when read (--cast-on-use), as the
    // engine's mapped graph does, which needs the checkpoint once plus a batch's activations.
    const fitsFloat32 = !s.memoryGuard || 3.5 * planned + 2 * 2 ** 30 <= s.memAvailableBytes()
    const peerWeights = s.peerWeights === 'auto' ? (fitsFloat32 ? 'float32' : 'cast-on-use') : s.peerWeights
    // Measured on the whole OLMoE-1B-7B (12.9 GiB): engine 1.08x, cast-on-use peer 1.12x the checkpoint.
    const need = 1.15 * planned + 2 * 2 ** 30
    if (s.memoryGuard && need > s.memAvailableBytes()) {
      rows.push({ config: name, layers: config.num_hidden_layers, skipped: `needs about ${mb(need)}, ${mb(s.memAvailableBytes())} available` })
      console.log(`(e) ${name}: skipped (needs about ${mb(need)}, ${mb(s.memAvailableBytes())} available)`)
      continue
    }
    const tag = `${name}-tasks-L${config.num_hidden_layers}`
    const dir = path.join(work, tag)
    const bytes = await writeCheckpoint(dir, config, 29)
    for (const threads of s.threads) {
      const out = (who: string) => path.join(work, `${tag}-t${threads}.${who}`)
      const home = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-scale-home-'))
      const job: TasksJob = { tasks: true, dir, threads, requests: requestsFile, out: out('engine'), home }
      const e = await runChild(process.execPath, ['--import', 'tsx', path.join(HERE, 'scale.bench.ts')], { ...process.env, SCALE_BENCH_CHILD: JSON.stringify(job), MOE_HARNESS_HOME: home }, s.cap)
      fs.rmSync(home, { recursive: true, force: true })
      const peerArgs = [TORCH_PEER_SCRIPT, '--model', dir, '--requests', requestsFile, '--threads', String(threads), '--out', out('peer'), ...(peerWeights === 'cast-on-use' ? ['--cast-on-use'] : [])]
      const p = await runChild(s.python, peerArgs, torchPeerEnv(s.openblas, threads), s.cap)
      // Each task's line is its own phase (`task:<name>`), so a child killed at the cap keeps the tasks it finished.
      const perTask = (r: ChildResult) => new Map(Object.keys(suite).flatMap(k => (typeof r.phases[`task:${k}`]?.seconds === 'number' ? [[k, r.phases[`task:${k}`]!.seconds as number]] : [])))
      const eSec = perTask(e), pSec = perTask(p)
      const tasks = Object.fromEntries(Object.entries(suite).map(([task, t]) => {
        const es = eSec.get(task) ?? null, ps = pSec.get(task) ?? null
        const peerInfo = p.phases[`task:${task}`]
        return [task, {
          docs: t.docs, requests: t.requests.length, lmEvalTokens: t.lmEvalTokens, harnessTokens: t.processedTokens, scoredTokens: t.scoredTokens,
          peerForwards: peerInfo?.forwards ?? null, peerInputTokens: peerInfo?.inputTokens ?? null,
          engineSeconds: round(es), peerSeconds: round(ps),
          engineTokensPerSecond: round(es ? t.lmEvalTokens / es : null, 1), peerTokensPerSecond: round(ps ? t.lmEvalTokens / ps : null, 1),
          tokensPerSecondEngineOverPeer: round(es && ps ? ps / es : null),
          maxAbsLogprobDiff: maxAbsDiff(`${out('engine')}.${task}`, `${out('peer')}.${task}`),
        }]
      }))
      const total = (m: Map<string, number>) => (Object.keys(suite).every(k => m.has(k)) ? [...m.values()].reduce((a, b) => a + b, 0) : null)
      const eTotal = total(eSec), pTotal = total(pSec)
      const lmEvalTokens = Object.values(suite).reduce((n, t) => n + t.lmEvalTokens, 0)
      const failed = (r: ChildResult) => (r.timedOut ? { timedOut: { capSeconds: s.cap } } : r.exitCode !== 0 ? { failed: { exitCode: r.exitCode, stderr: r.stderrTail } } : {})
      const row = {
        config: name, model: REAL[name]!.model, layers: config.num_hidden_layers, hidden: config.hidden_size, vocab: config.vocab_size, checkpointBytes: bytes, threads,
        engine: { sessionSeconds: round((e.phases.session?.seconds as number | undefined) ?? null), peakRssBytes: (e.phases.end?.peakRssBytes as number | undefined) ?? (e.polledPeakRssBytes || null), ...failed(e) },
        peer: { weights: peerWeights, loadSeconds: round((p.phases.load?.seconds as number | undefined) ?? null), peakRssBytes: (p.phases.result?.peakRssBytes as number | undefined) ?? (p.polledPeakRssBytes || null), ...failed(p) },
        tasks,
        suite: {
          lmEvalTokens, engineSeconds: round(eTotal), peerSeconds: round(pTotal),
          engineTokensPerSecond: round(eTotal ? lmEvalTokens / eTotal : null, 1), peerTokensPerSecond: round(pTotal ? lmEvalTokens / pTotal : null, 1),
          tokensPerSecondEngineOverPeer: round(eTotal && pTotal ? pTotal / eTotal : null),
        },
      }
      rows.push(row)
      for (const [task, t] of Object.entries(tasks)) {
        console.log(`(e) ${tag} ${threads} thread(s) ${task}: ${t.requests} requests, ${t.lmEvalTokens} lm-eval tokens (harness feeds ${t.harnessTokens}, peer ${t.peerInputTokens ?? '-'}): ` +
          `engine ${t.engineSeconds ?? '-'} s (${t.engineTokensPerSecond ?? '-'} tok/s), peer ${t.peerSeconds ?? '-'} s (${t.peerTokensPerSecond ?? '-'} tok/s), engine/peer ${t.tokensPerSecondEngineOverPeer ?? '-'}, max |dlogp| ${t.maxAbsLogprobDiff ?? '-'}`)
      }
      console.log(`(e) ${tag} ${threads} thread(s) suite: engine/peer ${row.suite.tokensPerSecondEngineOverPeer ?? '-'} (${row.suite.engineSeconds ?? '-'} s vs ${row.suite.peerSeconds ?? '-'} s)` +
        `${'failed' in row.engine || 'timedOut' in row.engine ? ` ENGINE ${JSON.stringify(failed(e))}` : ''}${'failed' in row.peer || 'timedOut' in row.peer ? ` PEER ${JSON.stringify(failed(p))}` : ''}`)
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return rows
}
