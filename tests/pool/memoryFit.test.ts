// The pool fits in memory: fitPool chooses the most workers (never fewer than 1) whose footprint stays
// within the safety fraction of the memory available and says why; the per-worker estimate follows
// the batch shape; a real sweep on the built-in model prints the plan and runs the pool it chose.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { parseModelSpec } from '../../src/model/modelSpec.ts'
import {
  availableMemoryBytes, estimateWorkerBytes, estimateWorkerParts, fitPool, MEMORY_SAFETY, modelWeightBytes,
  ORT_ALLOCATION_FACTOR, sessionBytes, WORKER_OVERHEAD_BYTES, worstBatch,
} from '../../src/pool/memoryFit.ts'
import { formatBytes } from '../../src/util/bytes.ts'
import { loadTask, loadTaskDocs } from '../../src/tasks/registry.ts'
import { longestRequestBound, requestCountBound } from '../../src/tasks/requestBound.ts'
import { lastJson, ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const GB = 1e9
const TINY = path.join(ROOT, 'models', 'tiny-moe')

describe('fitPool', () => {
  it('keeps the requested workers when they fit, and shares the cores among them', () => {
    const fit = fitPool({ requestedWorkers: 2, cores: 8, availableBytes: 21 * GB, modelBytes: 13.8 * GB, perWorkerBytes: 1.9 * GB })
    assert.equal(fit.workers, 2)
    assert.equal(fit.threads, 4)
    assert.equal(fit.fits, true)
    assert.equal(fit.reduced, false)
    assert.equal(fit.reason, 'pool: 2 workers x 4 threads (model 13.8 GB mapped once + 2 x 1.90 GB per worker = 17.6 GB fits 85% of 21.0 GB available)')
  })

  it('reduces the workers to the most that fit, says from how many and why, and gives the freed cores to the rest', () => {
    // budget 0.85 x 20 = 17 GB; 10 + w x 2 <= 17 holds up to w = 3.
    const fit = fitPool({ requestedWorkers: 6, cores: 6, availableBytes: 20 * GB, modelBytes: 10 * GB, perWorkerBytes: 2 * GB, batch: { rows: 1, rowTokens: 4096 } })
    assert.equal(fit.workers, 3)
    assert.equal(fit.threads, 2)
    assert.equal(fit.fits, true)
    assert.equal(fit.reduced, true)
    assert.match(fit.reason, /^pool: 3 workers x 2 threads, reduced from 6 requested workers because model 10\.0 GB mapped once \+ 6 x 2\.00 GB per worker at batches of 1 x 4096 tokens = 22\.0 GB exceeds 85% of 20\.0 GB available; model 10\.0 GB .* 3 x 2\.00 GB .* = 16\.0 GB fits$/)
    // At the boundary (safety 1, exact integers): 11 + 3 x 2 = 17 fits; one byte more per worker and only two do.
    assert.equal(fitPool({ requestedWorkers: 6, cores: 6, availableBytes: 17 * GB, modelBytes: 11 * GB, perWorkerBytes: 2 * GB, safety: 1 }).workers, 3)
    assert.equal(fitPool({ requestedWorkers: 6, cores: 6, availableBytes: 17 * GB, modelBytes: 11 * GB, perWorkerBytes: 2 * GB + 1, safety: 1 }).workers, 2)
  })

  it("counts each session's bytes once for the main process and twice per worker", () => {
    // 9.5 + 1 x 0.5 (main) + w x (1 + 2 x 0.5) <= 16 holds up to w = 3, exactly; one byte more per session and only two do.
    const r = { requestedWorkers: 6, cores: 6, availableBytes: 16 * GB, modelBytes: 9.5 * GB, perWorkerBytes: 1 * GB, safety: 1 }
    const fit = fitPool({ ...r, sessionBytes: 0.5 * GB })
    assert.deepEqual([fit.workers, fit.fits], [3, true])
    assert.match(fit.reason, /^pool: 3 workers x 2 threads, reduced from 6 requested workers because model 9\.50 GB mapped once \+ 6 x 1\.00 GB per worker \+ 13 sessions x 500 MB \(onnxruntime's state per weight tensor; 1 in the main process \+ 2 per worker\) = 22\.0 GB exceeds 100% of 16\.0 GB available; .* 3 x 1\.00 GB per worker \+ 7 sessions x 500 MB .* = 16\.0 GB fits$/)
    assert.equal(fitPool({ ...r, sessionBytes: 0.5 * GB + 1 }).workers, 2)
    assert.throws(() => fitPool({ ...r, sessionBytes: -1 }), /sessionBytes must be a non-negative number of bytes/)
  })

  it('never goes below one worker: the reason says it will likely not fit and how to fix it', () => {
    for (const requested of [1, 4]) {
      const fit = fitPool({ requestedWorkers: requested, cores: 2, availableBytes: 16 * GB, modelBytes: 12 * GB, perWorkerBytes: 3 * GB })
      assert.equal(fit.workers, 1)
      assert.equal(fit.threads, 2)
      assert.equal(fit.fits, false)
      assert.equal(fit.reduced, requested > 1)
      assert.match(fit.reason, /15\.0 GB exceeds 85% of 16\.0 GB available, so scoring will likely run out of memory/)
      assert.match(fit.reason, /batchTokens/)
      assert.match(fit.reason, /smaller context/)
      assert.match(fit.reason, /more free memory/)
    }
    // Single-row batches: the reason does not suggest a lower batchTokens.
    const wide = fitPool({ requestedWorkers: 1, cores: 2, availableBytes: 16 * GB, modelBytes: 12 * GB, perWorkerBytes: 3 * GB, batch: { rows: 1, rowTokens: 4096 } })
    assert.match(wide.reason, /smaller context \(the batches are already single rows of 4096 tokens, so a lower batchTokens does not help\)/)
    // A model larger than the machine alone: still one worker.
    assert.equal(fitPool({ requestedWorkers: 3, cores: 2, availableBytes: 1 * GB, modelBytes: 2 * GB, perWorkerBytes: 0.1 * GB }).workers, 1)
    // The sessions alone do not fit (48 x 128 experts: 1.24 GB each, three for one worker): no batch
    // setting helps, and the reason says so rather than suggesting a lower batchTokens.
    const sessions = fitPool({ requestedWorkers: 2, cores: 2, availableBytes: 4 * GB, modelBytes: 0.08 * GB, perWorkerBytes: 0.3 * GB, sessionBytes: 1.24 * GB, batch: { rows: 8, rowTokens: 256 } })
    assert.equal(sessions.workers, 1)
    assert.match(sessions.reason, /use a machine with more free memory: the model and onnxruntime's state of its sessions \(1\.24 GB each, one per weight tensor: it grows with layers x experts, not with the batch\) and a worker's fixed 268 MB come to 4\.07 GB before any batch, so smaller batches cannot help$/)
    assert.doesNotMatch(sessions.reason, /batchTokens/)
  })

  it('keeps threads that were given, whatever the workers; the safety fraction is a parameter', () => {
    const fit = fitPool({ requestedWorkers: 4, requestedThreads: 3, cores: 16, availableBytes: 10 * GB, modelBytes: 0, perWorkerBytes: 4 * GB })
    assert.deepEqual([fit.workers, fit.threads], [2, 3])
    assert.equal(fitPool({ requestedWorkers: 4, requestedThreads: 3, cores: 16, availableBytes: 10 * GB, modelBytes: 0, perWorkerBytes: 4 * GB, safety: 0.5 }).workers, 1)
    assert.equal(fitPool({ requestedWorkers: 3, cores: 2, availableBytes: 10 * GB, modelBytes: 0, perWorkerBytes: 0.1 * GB }).threads, 1) // more workers than cores
    assert.throws(() => fitPool({ requestedWorkers: 0, cores: 2, availableBytes: GB, modelBytes: 0, perWorkerBytes: 0 }), /positive integer.*--workers/)
  })
})

describe('estimateWorkerBytes', () => {
  // OLMoE-1B-7B's shape (config.json of allenai/OLMoE-1B-7B-0924).
  const olmoe = parseModelSpec({
    architectures: ['OlmoeForCausalLM'], vocab_size: 50304, hidden_size: 2048, intermediate_size: 1024, num_hidden_layers: 16,
    num_attention_heads: 16, num_key_value_heads: 16, max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000,
    num_experts: 64, num_experts_per_tok: 8, norm_topk_prob: false, hidden_act: 'silu', tie_word_embeddings: false,
  })

  it('matches a hand computation for OLMoE at 2 x 2048 tokens', () => {
    const B = 2, T = 2048, n = B * T
    // B·H·T² = 2^27 scores exceed one pass (2^26, sequenceChunks.ts): passes of 2^26 / (B·H·T) = 1024 queries;
    // the head's blocks hold floor(2^26 / 50304) = 1334 positions.
    const Q = 1024, M = 1334
    const live = {
      attention: (3 * B * 16 * Q * T + B * Q * T) * 4, // scores, + mask, softmax; the mask
      logits: 2 * M * 50304 * 4, // logits and log-softmax
      hidden: 10 * n * 2048 * 4, // width max(d 2048, H 16 x head_dim 128)
      ffn: 3 * n * (8 * 1024) * 4, // top-8 experts of F 1024: gate, up, product
      router: n * 64 * (8 + 3) * 4,
      weights: 2 * 50304 * 2048 * 4, // lm_head cast and transposed
    }
    const sum = Object.values(live).reduce((a, b) => a + b, 0)
    assert.deepEqual(estimateWorkerParts(olmoe, B, T), { ...live, allocator: sum * (ORT_ALLOCATION_FACTOR - 1), overhead: WORKER_OVERHEAD_BYTES })
    assert.equal(estimateWorkerBytes(olmoe, B, T), sum * ORT_ALLOCATION_FACTOR + WORKER_OVERHEAD_BYTES)
  })

  it('grows with the tokens per row and with the rows', () => {
    let last = 0
    for (const T of [1, 16, 256, 1024, 2048, 4096]) {
      const bytes = estimateWorkerBytes(olmoe, 1, T)
      assert.ok(bytes > last, `T ${T}: ${bytes} <= ${last}`)
      last = bytes
    }
    assert.ok(estimateWorkerBytes(olmoe, 4, 512) > estimateWorkerBytes(olmoe, 2, 512))
    // At a fixed token budget, wide rows cost more (attention grows with B·T²).
    assert.ok(estimateWorkerBytes(olmoe, 1, 4096) > estimateWorkerBytes(olmoe, 8, 512))
  })

  it('the worst batch of a token budget: rows of the full context, as many as the budget holds (at least one)', () => {
    assert.deepEqual(worstBatch(olmoe, 2048), { rows: 1, rowTokens: 4096 })
    assert.deepEqual(worstBatch(olmoe, 16384), { rows: 4, rowTokens: 4096 })
    assert.deepEqual(worstBatch({ ...olmoe, slidingWindow: 1024 }, 4096), { rows: 4, rowTokens: 1024 })
  })
})

describe('memory sources', () => {
  const dir = tmpDir()
  it('reads MemAvailable, and a numeric cgroup memory.max caps it by what the cgroup has left', () => {
    const meminfo = path.join(dir, 'meminfo')
    fs.writeFileSync(meminfo, 'MemTotal:       24684084 kB\nMemFree:        16818224 kB\nMemAvailable:   20000000 kB\n')
    const cgroup = path.join(dir, 'cgroup')
    fs.mkdirSync(cgroup)
    // Inside a cgroup namespace: this process's cgroup is the mount's root.
    const selfCgroup = path.join(dir, 'self-cgroup')
    fs.writeFileSync(selfCgroup, '0::/\n')
    assert.equal(availableMemoryBytes({ meminfo, cgroup, selfCgroup }), 20000000 * 1024)
    fs.writeFileSync(path.join(cgroup, 'memory.max'), 'max\n')
    assert.equal(availableMemoryBytes({ meminfo, cgroup, selfCgroup }), 20000000 * 1024)
    fs.writeFileSync(path.join(cgroup, 'memory.max'), `${8 * 2 ** 30}\n`)
    fs.writeFileSync(path.join(cgroup, 'memory.current'), `${3 * 2 ** 30}\n`)
    assert.equal(availableMemoryBytes({ meminfo, cgroup, selfCgroup }), 5 * 2 ** 30)
    // No meminfo: os.freemem(), still capped.
    assert.equal(availableMemoryBytes({ meminfo: path.join(dir, 'absent'), cgroup, selfCgroup }), Math.min(os.freemem(), 5 * 2 ** 30))
    // Inactive file pages are reclaimed before the limit bites: they do not count as used.
    fs.writeFileSync(path.join(cgroup, 'memory.stat'), `anon ${2 * 2 ** 30}\ninactive_file ${2 ** 30}\nactive_file 4096\n`)
    assert.equal(availableMemoryBytes({ meminfo, cgroup, selfCgroup }), 6 * 2 ** 30)
  })

  const meminfo20 = () => {
    const file = path.join(dir, 'meminfo20')
    fs.writeFileSync(file, 'MemTotal:       24684084 kB\nMemAvailable:   20000000 kB\n')
    return file
  }

  it('cgroup v2 without a namespace (a Slurm job): the limit in the job\'s own folder and its ancestors caps what is available', () => {
    const cgroup = path.join(dir, 'v2')
    const job = path.join(cgroup, 'system.slice', 'slurmstepd.scope', 'job_42')
    fs.mkdirSync(path.join(job, 'step_0'), { recursive: true })
    fs.writeFileSync(path.join(cgroup, 'memory.current'), `${9 * 2 ** 30}\n`) // the root has no memory.max
    fs.writeFileSync(path.join(job, 'memory.max'), `${4 * 2 ** 30}\n`)
    fs.writeFileSync(path.join(job, 'memory.current'), `${2 ** 30}\n`)
    fs.writeFileSync(path.join(job, 'step_0', 'memory.max'), 'max\n')
    const selfCgroup = path.join(dir, 'v2-self')
    fs.writeFileSync(selfCgroup, '0::/system.slice/slurmstepd.scope/job_42/step_0\n')
    assert.equal(availableMemoryBytes({ meminfo: meminfo20(), cgroup, selfCgroup }), 3 * 2 ** 30)
    // A tighter limit further up wins.
    fs.writeFileSync(path.join(cgroup, 'system.slice', 'memory.max'), `${10 * 2 ** 30}\n`)
    fs.writeFileSync(path.join(cgroup, 'system.slice', 'memory.current'), `${9 * 2 ** 30 + 2 ** 29}\n`)
    assert.equal(availableMemoryBytes({ meminfo: meminfo20(), cgroup, selfCgroup }), 2 ** 29)
  })

  it('cgroup v1: memory.limit_in_bytes of the memory controller\'s folder (the kernel\'s "unlimited" is no limit)', () => {
    const cgroup = path.join(dir, 'v1')
    const job = path.join(cgroup, 'memory', 'slurm', 'uid_1000', 'job_7')
    fs.mkdirSync(job, { recursive: true })
    fs.writeFileSync(path.join(cgroup, 'memory', 'memory.limit_in_bytes'), '9223372036854771712\n')
    fs.writeFileSync(path.join(cgroup, 'memory', 'memory.usage_in_bytes'), `${12 * 2 ** 30}\n`)
    fs.writeFileSync(path.join(job, 'memory.limit_in_bytes'), `${8 * 2 ** 30}\n`)
    fs.writeFileSync(path.join(job, 'memory.usage_in_bytes'), `${3 * 2 ** 30}\n`)
    fs.writeFileSync(path.join(job, 'memory.stat'), `cache ${2 ** 30}\ntotal_inactive_file ${2 ** 30}\n`)
    const selfCgroup = path.join(dir, 'v1-self')
    fs.writeFileSync(selfCgroup, '12:pids:/slurm/uid_1000/job_7\n4:memory:/slurm/uid_1000/job_7\n1:name=systemd:/\n0::/\n')
    assert.equal(availableMemoryBytes({ meminfo: meminfo20(), cgroup, selfCgroup }), 6 * 2 ** 30)
    // The controller mounted at this process's own cgroup (a namespace): its root folder holds the limit.
    fs.writeFileSync(path.join(cgroup, 'memory', 'memory.limit_in_bytes'), `${5 * 2 ** 30}\n`)
    fs.writeFileSync(selfCgroup, '4:memory:/docker/abc\n0::/\n')
    assert.equal(availableMemoryBytes({ meminfo: meminfo20(), cgroup, selfCgroup }), 0)
    fs.writeFileSync(path.join(cgroup, 'memory', 'memory.usage_in_bytes'), `${2 ** 30}\n`)
    assert.equal(availableMemoryBytes({ meminfo: meminfo20(), cgroup, selfCgroup }), 4 * 2 ** 30)
  })

  it('this machine: a positive number no larger than its memory', () => {
    const bytes = availableMemoryBytes()
    assert.ok(bytes > 0 && bytes <= os.totalmem(), String(bytes))
  })

  it("the built-in model's weight bytes are its safetensors data, each tensor once", () => {
    let data = 0
    for (const f of fs.readdirSync(TINY).filter(f => f.endsWith('.safetensors'))) {
      const buf = fs.readFileSync(path.join(TINY, f))
      data += buf.length - 8 - Number(buf.readBigUInt64LE(0))
    }
    assert.equal(modelWeightBytes(openCheckpoint(TINY, { warn: () => {} })), data)
  })
})

describe('sweep sizes its pool to the memory available', () => {
  const dir = tmpDir()
  const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
  const ckpt = openCheckpoint(TINY, { warn: () => {} })
  const config = (name: string, extra: Record<string, unknown>) => {
    const file = path.join(dir, `${name}.config.ts`)
    const body = { models: { tiny: TINY }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 4 }, pool: { workers: 2 }, ...extra }
    writeSweepConfig(file, body)
    return file
  }
  const poolLine = (stderr: string) => {
    const lines = stderr.split('\n').filter(l => l.startsWith('pool: '))
    assert.equal(lines.length, 1, stderr)
    return lines[0]!
  }

  it('prints the plan in one line: requested workers that fit, the cores shared, the footprint', async () => {
    const r = runCli(['sweep', '--config', config('fits', {}), '--db', path.join(dir, 'fits.sqlite'), '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const task = await loadTask('brown-cloze')
    const longest = longestRequestBound(task, (await loadTaskDocs(task)).docs.slice(0, 4), ckpt.spec.maxPositions)
    const { rows, rowTokens } = worstBatch(ckpt.spec, 2048, longest, 4)
    // The default batchTokens holds 7 rows as long as the items' bound (their choices packed after the
    // context: past tiny-moe's 256-token context); four brown-cloze items make 4 requests.
    assert.deepEqual([rows, rowTokens], [4, longest])
    const threads = Math.max(1, Math.floor(os.availableParallelism() / 2))
    const model = formatBytes(modelWeightBytes(ckpt)), per = formatBytes(estimateWorkerBytes(ckpt.spec, rows, rowTokens))
    // tiny-moe's 126 weight tensors: 8.26 MB a session, 1 in the main process and 2 per worker.
    const session = formatBytes(sessionBytes(ckpt))
    assert.match(poolLine(r.stderr), new RegExp(`^pool: 2 workers x ${threads} threads? \\(model ${model} mapped once \\+ 2 x ${per} per worker at batches of 4 x ${longest} tokens \\+ 5 sessions x ${session} \\(onnxruntime's state per weight tensor; 1 in the main process \\+ 2 per worker\\) = .* fits 85% of [\\d.]+ GB available\\)$`))
    assert.deepEqual(lastJson(r.stdout).pool, { workers: 2, threads })
    assert.equal(lastJson(r.stdout).completed, 1)
  })

  it('starts fewer workers than requested when they would not fit, and still scores every cell', async () => {
    // A token budget whose worst batch needs ~60% of this machine's budget per worker: one fits, two do not.
    const budget = MEMORY_SAFETY * availableMemoryBytes()
    let rows = 1
    while (estimateWorkerBytes(ckpt.spec, rows * 2, 256) < 0.6 * budget) rows *= 2
    while (estimateWorkerBytes(ckpt.spec, rows + 1, 256) < 0.6 * budget) rows += Math.max(1, Math.floor(rows / 16))
    // A batch has at most as many rows as its task has requests (worstBatch): enough documents of a
    // rolling task that their requests could fill that many rows.
    const task = await loadTask('brown-perplexity')
    const docs = (await loadTaskDocs(task)).docs
    let limit = 1
    while (requestCountBound(task, docs.slice(0, limit), 256) < rows && limit < docs.length) limit++
    assert.ok(requestCountBound(task, docs.slice(0, limit), 256) >= rows, `brown-perplexity cannot fill ${rows} rows`)
    const r = runCli(['sweep', '--config', config('reduced', { batchTokens: rows * 256, tasks: ['brown-perplexity'], subset: { limit } }), '--db', path.join(dir, 'reduced.sqlite'), '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const line = poolLine(r.stderr)
    assert.match(line, new RegExp(`^pool: 1 worker x ${os.availableParallelism()} threads?, reduced from 2 requested workers because .* 2 x .* exceeds 85% of .*; .* 1 x .* fits$`))
    assert.deepEqual(lastJson(r.stdout).pool, { workers: 1, threads: os.availableParallelism() })
    assert.equal(lastJson(r.stdout).completed, 1)
  })
})
