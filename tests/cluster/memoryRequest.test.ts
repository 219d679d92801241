// The memory an array task of `sweep --slurm` requests: the need for one worker (the pool's own
// figures plus the main process, over the pool's safety fraction), the user's memory option in every
// spelling sbatch reads, and the warning when that option asks less than the need.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { loadConfig } from '../../src/config/defineConfig.ts'
import { calibrationBytes, MAIN_PROCESS_BYTES, memoryRequest, parseSlurmSize, slurmSize, taskMemoryNeed, userMemoryRequest, type MemoryNeed } from '../../src/cluster/memoryRequest.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { estimateWorkerBytes, float32WeightBytes, MEMORY_SAFETY, modelWeightBytes, sessionBytes } from '../../src/pool/memoryFit.ts'
import { spillBudgetBytes } from '../../src/edits/overrideSpill.ts'
import { loadSweepInputs } from '../../src/sweep/inputs.ts'
import { ROOT, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const MiB = 2 ** 20, GiB = 2 ** 30

/** An OLMoE-1B-7B-sized need: 13.8 GB of BF16 weights and a 2.0 GB worker. */
const olmoe = (): MemoryNeed => {
  const modelBytes = 13.8e9, perWorkerBytes = 2.0e9
  return { bytes: MAIN_PROCESS_BYTES + (modelBytes + perWorkerBytes) / MEMORY_SAFETY, mainBytes: MAIN_PROCESS_BYTES, modelBytes, model: 'olmoe', perWorkerBytes, batch: { rows: 1, rowTokens: 4096 }, weightsInMemory: false, preparationBytes: 0 }
}

describe('Slurm memory sizes', () => {
  it('reads sizes as sbatch does: megabytes without a unit, K/M/G/T binary in either case, nothing else', () => {
    assert.equal(parseSlurmSize('64G'), 64 * GiB)
    assert.equal(parseSlurmSize('64g'), 64 * GiB)
    assert.equal(parseSlurmSize('512'), 512 * MiB)
    assert.equal(parseSlurmSize('2048M'), 2 * GiB)
    assert.equal(parseSlurmSize('1T'), 2 ** 40)
    assert.equal(parseSlurmSize('100k'), 100 * 1024)
    assert.equal(parseSlurmSize('0'), 0)
    // sbatch (22.05) reads a trailing B too: --mem=64GB is 64G, 500MB is 500M (a below-need 500MB went unwarned).
    assert.equal(parseSlurmSize('64GB'), 64 * GiB)
    assert.equal(parseSlurmSize('500mb'), 500 * MiB)
    for (const bad of ['1.5G', 'lots', '', '-1G', '64B', 'GB']) assert.equal(parseSlurmSize(bad), undefined, bad)
  })

  it('writes a need rounded up to whole GiB (at least 1G)', () => {
    assert.equal(slurmSize(17.2 * GiB), '18G')
    assert.equal(slurmSize(18 * GiB), '18G')
    assert.equal(slurmSize(18 * GiB + 1), '19G')
    assert.equal(slurmSize(300 * MiB), '1G')
  })
})

describe("the user's memory option", () => {
  it('is found in every spelling sbatch reads (= or a space, with or without dashes, a unique prefix), the last one winning', () => {
    const cases: [string, string, string, number][] = [
      ['--mem=64G', 'mem', '--mem=64G', 64 * GiB],
      ['--mem 64G', 'mem', '--mem 64G', 64 * GiB],
      ['mem=64G', 'mem', '--mem=64G', 64 * GiB],
      ['  mem 64G ', 'mem', '--mem 64G', 64 * GiB],
      ['--mem-per-cpu=4G', 'mem-per-cpu', '--mem-per-cpu=4G', 4 * GiB],
      ['--mem-per-c=4096', 'mem-per-cpu', '--mem-per-c=4096', 4 * GiB],
      ['mem-per-gpu 80G', 'mem-per-gpu', '--mem-per-gpu 80G', 80 * GiB],
    ]
    for (const [entry, option, given, bytes] of cases) {
      assert.deepEqual(userMemoryRequest(['--qos=long', entry]), { option, given, value: given.replace(/^--[\w-]+[= ]/, ''), bytes }, entry)
    }
    // Not a memory request: another option, a memory binding, an ambiguous prefix (sbatch refuses it itself).
    for (const entry of ['--qos=long', '--mem-bind=local', '--mem-per=4G', '--mail-type=END', '--exclusive']) assert.equal(userMemoryRequest([entry]), undefined, entry)
    assert.equal(userMemoryRequest(['--mem=8G', '--mem=16G'])!.bytes, 16 * GiB)
    // A value that is not a size is still the user's request (kept), just not comparable.
    assert.deepEqual(userMemoryRequest(['--mem=plenty']), { option: 'mem', given: '--mem=plenty', value: 'plenty', bytes: undefined })
  })

  it("Slurm's input environment variables count, and override the script's lines", () => {
    assert.deepEqual(userMemoryRequest(['--mem=8G'], { SBATCH_MEM_PER_CPU: '2G' }), { option: 'mem-per-cpu', given: 'SBATCH_MEM_PER_CPU=2G', value: '2G', bytes: 2 * GiB })
    assert.equal(userMemoryRequest([], { SBATCH_MEM_PER_NODE: '' }), undefined, 'an empty variable is unset')
    assert.equal(userMemoryRequest([], { SBATCH_MEM_PER_NODE: '20G' })!.option, 'mem')
  })
})

describe('memoryRequest', () => {
  it('without a memory option: --mem of the need rounded up, with the parts, the override and the threads', () => {
    const need = olmoe()
    // 512 MiB + (13.8 + 2.0) GB / 0.85 = 0.537 + 18.588 = 19.125 GB = 17.81 GiB.
    assert.ok(Math.abs(need.bytes - 19.125e9) < 1e6)
    const r = memoryRequest(need, { sbatch: ['--qos=long'], cpusPerTask: 8 }, { workers: 1 })
    assert.equal(r.option, '--mem=18G')
    assert.equal(r.warning, undefined)
    const text = r.notes.join('\n')
    assert.match(text, /^Memory: --mem=18G is what one worker of the pool in each task needs: main process 537 MB \+ \(model 'olmoe' 13\.8 GB \+ 1 worker 2\.00 GB at batches of 1 x 4096 tokens\) \/ 85% = 19\.1 GB, rounded up to whole GiB/)
    assert.match(text, /override with --sbatch --mem=<size>/)
    assert.match(text, /Threads: --cpus-per-task=8: each worker runs the task's 8 CPUs shared by the workers that fit as intra-op threads/)
    assert.doesNotMatch(text, /pool\.workers/, 'one worker asked for: nothing about more')
    // More workers asked for: what each adds (2.0 GB / 0.85) and what all need (21.478 GB = 20.003 GiB).
    const two = memoryRequest(need, { sbatch: [] }, { workers: 2, threads: 4 }).notes.join('\n')
    assert.match(two, /pool\.workers 2: .* each further worker adds 2\.35 GB, so all 2 need --mem=21G\./)
    assert.doesNotMatch(two, /Threads:/, 'no --cpus-per-task: no note on threads')
  })

  it("names the sessions' state per weight tensor, and counts a worker's two in what each further worker adds", () => {
    // A Qwen3-30B-A3B-shaped checkpoint at tiny width: 18,867 tensors, 1.24 GB a session (memoryFit.ts SESSION_BYTES_PER_TENSOR).
    const s = 18_867 * 64 * 1024
    const base = olmoe()
    const need: MemoryNeed = { ...base, sessionBytes: s, bytes: base.bytes + 3 * s / MEMORY_SAFETY }
    const text = memoryRequest(need, { sbatch: [] }, { workers: 2 }).notes.join('\n')
    assert.match(text, /main process 537 MB \+ \(model 'olmoe' 13\.8 GB \+ 1 worker 2\.00 GB at batches of 1 x 4096 tokens \+ 3 sessions x 1\.24 GB \(onnxruntime's state per weight tensor\)\) \/ 85% = 23\.5 GB/)
    // (2.0 + 2 x 1.236) GB / 0.85 = 5.26 GB; 23.49 + 5.26 = 28.76 GB = 26.8 GiB.
    assert.match(text, /each further worker adds 5\.26 GB, so all 2 need --mem=27G\./)
  })

  it('keeps a sufficient user option and says nothing on stderr; --mem=0 (all of a node) is sufficient', () => {
    for (const [sbatch, cpus] of [[['--mem=18G'], undefined], [['mem=64G'], undefined], [['--mem-per-cpu=4G'], 8], [['--mem=0'], undefined]] as const) {
      const r = memoryRequest(olmoe(), { sbatch: [...sbatch], cpusPerTask: cpus }, { workers: 1 })
      assert.equal(r.option, undefined, `${sbatch}: no second memory option`)
      assert.equal(r.warning, undefined, `${sbatch}`)
      assert.match(r.notes[0]!, /^Memory: \S+ as given; one worker of the pool in each task needs 19\.1 GB \(--mem=18G\)/)
    }
  })

  it('warns when the user asks less than the need, naming both figures and the fix, and keeps the option', () => {
    const r = memoryRequest(olmoe(), { sbatch: ['--mem=16G'] }, { workers: 1 })
    assert.equal(r.option, undefined)
    assert.equal(r.userBytes, 16 * GiB)
    assert.match(r.warning!, /^--mem=16G asks 17\.2 GB per array task, below the 19\.1 GB \(--mem=18G\) one worker of the pool needs \(main process .*\/ 85%\): the task will likely be killed for memory.*request --mem=18G with --sbatch or in cluster\.sbatch of the config, or drop the memory option/)
    assert.match(r.notes.at(-1)!, /^WARNING: --mem=16G = 17\.2 GB per task is below that need/)
    // Per CPU: times the task's CPUs (Slurm's default 1 without --cpus-per-task), and the per-CPU fix.
    const perCpu = memoryRequest(olmoe(), { sbatch: ['--mem-per-cpu=4G'], cpusPerTask: 4 }, { workers: 1 })
    assert.equal(perCpu.userBytes, 16 * GiB)
    assert.match(perCpu.warning!, /^--mem-per-cpu=4G x 4 CPUs \(--cpus-per-task\) asks 17\.2 GB per array task, .*request --mem=18G \(or --mem-per-cpu=5G with 4 CPUs\)/)
    assert.match(memoryRequest(olmoe(), { sbatch: ['--mem-per-cpu=4G'] }, { workers: 1 }).warning!, /x 1 CPU \(no --cpus-per-task: Slurm's default\) asks 4\.29 GB/)
    // From the environment: the fix says to unset it.
    assert.match(memoryRequest(olmoe(), { sbatch: [] }, { workers: 1 }, { SBATCH_MEM_PER_NODE: '8G' }).warning!, /^SBATCH_MEM_PER_NODE=8G asks 8\.59 GB .*unset SBATCH_MEM_PER_NODE and request --mem=18G/)
    // Just enough: no warning.
    assert.equal(memoryRequest(olmoe(), { sbatch: [`--mem=${Math.ceil(olmoe().bytes / MiB)}M`] }, { workers: 1 }).warning, undefined)
    // Not a size: kept, not compared.
    const odd = memoryRequest(olmoe(), { sbatch: ['--mem=plenty'] }, { workers: 1 })
    assert.equal(odd.warning, undefined)
    assert.match(odd.notes.at(-1)!, /'plenty' is not a size sbatch reads/)
  })
})

describe('taskMemoryNeed on the built-in model', () => {
  it("is the main process plus the largest model's weights and one worker at the worst batch, over the safety fraction", async () => {
    const dir = tmpDir()
    const file = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { sample: 4 },
    })
    const loaded = await loadConfig(file)
    const inputs = await loadSweepInputs(loaded.config, loaded.baseDir, () => {})
    const tiny = openCheckpoint(path.join(ROOT, 'models/tiny-moe'))
    const need = taskMemoryNeed(inputs, false)
    assert.equal(need.model, 'tiny-moe')
    assert.equal(need.modelBytes, modelWeightBytes(tiny))
    assert.ok(need.perWorkerBytes > 256 * MiB, 'at least the fixed worker overhead')
    // onnxruntime's state per weight tensor of a session: 1 in the main process, 2 in the worker (memoryFit.ts poolBytes).
    assert.equal(need.sessionBytes, sessionBytes(tiny))
    assert.equal(need.bytes, MAIN_PROCESS_BYTES + (need.modelBytes + 3 * sessionBytes(tiny) + need.perWorkerBytes) / MEMORY_SAFETY)
    // MOE_HARNESS_WEIGHTS=memory: each worker also holds the float32 weights twice.
    const inMemory = taskMemoryNeed(inputs, true)
    assert.equal(inMemory.perWorkerBytes, need.perWorkerBytes + 2 * float32WeightBytes(tiny))
    assert.ok(inMemory.weightsInMemory)
    assert.equal(need.calibration, undefined, 'ratio 0 calibrates nothing')
    assert.equal(need.preparationBytes, 0)
  })

  it('covers the calibration before scoring and a method prepared while workers score (a calibrating sweep was requested less than its peak)', async () => {
    const dir = tmpDir()
    const file = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning', { method: 'magnitude-pruning', params: { score: 'wanda' } }], ratios: [0.5], tasks: ['brown-cloze'], subset: { sample: 4 },
      calibration: { sequences: 8, length: 64 },
    })
    const loaded = await loadConfig(file)
    const inputs = await loadSweepInputs(loaded.config, loaded.baseDir, () => {})
    const tiny = openCheckpoint(path.join(ROOT, 'models/tiny-moe'))
    const need = taskMemoryNeed(inputs, false)
    const beyond = calibrationBytes(tiny, 8, 64, false)
    assert.deepEqual(need.calibration, { bytes: modelWeightBytes(tiny) + beyond, model: 'tiny-moe', sequences: 8, length: 64 })
    // Wanda calibrates sequentially (its default): in the main process, while the workers score.
    // The edited tensors: the spill budget, but never more than every weight in float32. Its session is
    // the main process's one, which scoring counts already.
    assert.equal(need.preparationBytes, Math.min(spillBudgetBytes(), float32WeightBytes(tiny)) + beyond - sessionBytes(tiny))
    assert.equal(need.bytes, MAIN_PROCESS_BYTES + Math.max(need.modelBytes + 3 * sessionBytes(tiny) + need.perWorkerBytes + need.preparationBytes, need.calibration!.bytes) / MEMORY_SAFETY)
    assert.ok(beyond >= sessionBytes(tiny) + estimateWorkerBytes(tiny.spec, 64, 64) + 2 * 8 * 64 * tiny.spec.hiddenSize * 4)

    // MOE_HARNESS_SPILL_MB=Infinity (never store) gave '--mem=InfinityG', refused by sbatch.
    const saved = process.env.MOE_HARNESS_SPILL_MB
    process.env.MOE_HARNESS_SPILL_MB = 'Infinity'
    try {
      const unbounded = taskMemoryNeed(inputs, false)
      assert.ok(Number.isFinite(unbounded.bytes))
      assert.equal(unbounded.preparationBytes, float32WeightBytes(tiny) + beyond - sessionBytes(tiny))
      assert.match(memoryRequest(unbounded, { sbatch: [] }, { workers: 1 }).option!, /^--mem=\d+G$/)
    } finally {
      if (saved === undefined) delete process.env.MOE_HARNESS_SPILL_MB
      else process.env.MOE_HARNESS_SPILL_MB = saved
    }
  })

  it("counts NAEE's layer samples as the first windows only (collect.ts windowsNeeded), not all of them", async () => {
    const dir = tmpDir()
    const file = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['naee'], ratios: [0.25], tasks: ['brown-cloze'], subset: { sample: 4 },
      calibration: { sequences: 64, length: 128 },
    })
    const loaded = await loadConfig(file)
    const need = taskMemoryNeed(await loadSweepInputs(loaded.config, loaded.baseDir, () => {}), false)
    // 2048 sample tokens: 16 windows of 128, of the 64.
    assert.deepEqual({ ...need.calibration, bytes: undefined }, { bytes: undefined, model: 'tiny-moe', sequences: 16, length: 128 })
  })
})
