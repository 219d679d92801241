// `sweep --k8s-manifest` gives each pod a memory request and limit: what one worker of the pool needs
// (the figure `sweep --slurm` requests, which tests/cluster/memory-dry-run.test.ts checks against the
// pool's own 'pool:' line), or the user's --memory / cluster.memory, a Kubernetes quantity validated
// with a clear error. Real CLI runs on the built-in model; no cluster needed.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { k8sMemory, k8sSize } from '../../src/cluster/k8sMemory.ts'
import { MAIN_PROCESS_BYTES, type MemoryNeed } from '../../src/cluster/memoryRequest.ts'
import { MEMORY_SAFETY } from '../../src/pool/memoryFit.ts'
import { k8sMemoryProblem, parseK8sMemory } from '../../src/util/k8sQuantity.ts'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { unwrapComments } from '../helpers/comments.ts'
import { tmpDir } from '../helpers/tmp.ts'

const GiB = 2 ** 30

describe('Kubernetes memory quantities', () => {
  it('reads quantities as the API server does: binary and decimal suffixes, case-sensitive, no milli, at least a byte', () => {
    assert.equal(parseK8sMemory('18Gi'), 18 * GiB)
    assert.equal(parseK8sMemory('20G'), 20e9)
    assert.equal(parseK8sMemory('500Mi'), 500 * 2 ** 20)
    assert.equal(parseK8sMemory('1.5Gi'), 1.5 * GiB)
    assert.equal(parseK8sMemory('4k'), 4000)
    assert.equal(parseK8sMemory('129e6'), 129e6)
    assert.equal(parseK8sMemory('12345'), 12345)
    assert.equal(parseK8sMemory(' 2Ti '), 2 * 2 ** 40)
    for (const bad of ['18g', '18GB', '18GiB', '4K', '500m', '18 Gi', '0', '0.5', '-1Gi', 'Gi', 'lots', '']) assert.equal(parseK8sMemory(bad), undefined, bad)
  })

  it('says what to write instead', () => {
    assert.equal(k8sMemoryProblem('18g'), "'18g' is not a Kubernetes memory quantity (its units are case-sensitive, without a B): write for example 18Gi (powers of 1024) or 18G (powers of 1000)")
    assert.match(k8sMemoryProblem('500m'), /'m' is milli in Kubernetes: 500m is a fraction of a byte\): write for example 500Mi .* or 500M /)
    assert.match(k8sMemoryProblem('18 Gi'), /no space between the number and its unit/)
  })

  it('rounds a need up to whole GiB, at least 1Gi', () => {
    assert.equal(k8sSize(2 * GiB), '2Gi')
    assert.equal(k8sSize(2 * GiB + 1), '3Gi')
    assert.equal(k8sSize(1), '1Gi')
  })
})

/** An OLMoE-1B-7B-sized need: 13.8 GB of BF16 weights and a 2.0 GB worker (17.8 GiB in all). */
const olmoe = (weightsInMemory = false): MemoryNeed => {
  const modelBytes = 13.8e9, perWorkerBytes = weightsInMemory ? 2.0e9 + 2 * 27.6e9 : 2.0e9
  return { bytes: MAIN_PROCESS_BYTES + (modelBytes + perWorkerBytes) / MEMORY_SAFETY, mainBytes: MAIN_PROCESS_BYTES, modelBytes, model: 'olmoe', perWorkerBytes, batch: { rows: 1, rowTokens: 4096 }, weightsInMemory, preparationBytes: 0 }
}

describe('k8sMemory', () => {
  it('requests the need rounded up, says why and how to override, and what more workers or in-memory weights need', () => {
    const m = k8sMemory(olmoe(), olmoe(true), undefined, 3)
    assert.equal(m.quantity, '18Gi')
    assert.equal(m.warning, undefined)
    assert.match(m.notes[0]!, /^Memory: requests and limits of 18Gi are what one worker of the pool in each pod needs: main process 537 MB \+ \(model 'olmoe' 13\.8 GB \+ 1 worker 2\.00 GB at batches of 1 x 4096 tokens\) \/ 85% = 19\.1 GB, rounded up to whole GiB/)
    assert.match(m.notes[0]!, /override with --memory <size> \(or cluster\.memory in the config\)/)
    // + 2 x 27.6 GB of float32 weights per worker: 0.537 + (13.8 + 57.2) / 0.85 = 84.1 GB = 78.3 GiB.
    assert.match(m.notes[1]!, /MOE_HARNESS_WEIGHTS=memory needs --memory 79Gi\.$/)
    // 2 more workers at 2.0 GB / 0.85 each: 19.1 + 4.71 = 23.8 GB = 22.2 GiB.
    assert.match(m.notes[2]!, /pool\.workers 3: .* each further worker adds 2\.35 GB, so all 3 need 23Gi\.$/)
  })

  it("keeps the user's size as written, and warns when it is below the need", () => {
    const enough = k8sMemory(olmoe(), olmoe(), { value: '20G', from: 'cluster.memory' }, 1)
    assert.equal(enough.quantity, '20G')
    assert.equal(enough.warning, undefined)
    assert.match(enough.notes[0]!, /^Memory: cluster\.memory 20G as given, as the request and the limit of each pod; one worker of the pool in each pod needs 19\.1 GB \(18Gi\)/)
    assert.equal(enough.notes.length, 1, 'no in-memory note when it rounds to the same size, no workers note for one worker')
    const low = k8sMemory(olmoe(), olmoe(), { value: '16Gi', from: '--memory' }, 1)
    assert.equal(low.quantity, '16Gi')
    assert.match(low.warning!, /^--memory 16Gi gives each pod 17\.2 GB, below the 19\.1 GB \(18Gi\) one worker of the pool needs .* else drop --memory and the manifest requests 18Gi\.$/)
    assert.equal(low.notes.at(-1), 'WARNING: --memory 16Gi = 17.2 GB per pod is below that need; drop it for 18Gi.')
  })
})

describe('sweep --k8s-manifest requests the memory a pod needs', () => {
  const dir = tmpDir()
  const body = {
    models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0, 0.5], tasks: ['brown-cloze'],
    subset: { sample: 8 }, pool: { workers: 1 }, cluster: { arraySize: 2, cpusPerTask: 2 },
  }
  const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), body)
  const db = path.join(dir, 'results.sqlite')
  // Neither the weights' residency nor Slurm's input variables of the test's own environment.
  const env = { MOE_HARNESS_HOME: path.join(dir, 'home'), MOE_HARNESS_WEIGHTS: '', SBATCH_MEM_PER_NODE: '', SBATCH_MEM_PER_CPU: '', SBATCH_MEM_PER_GPU: '' }
  const manifest = (file: string, args: string[] = [], cfg = config, extra: Record<string, string> = {}) => {
    const r = runCli(['sweep', '--k8s-manifest', file, '--config', cfg, '--db', db, ...args], { env: { ...env, ...extra } })
    assert.equal(r.status, 0, r.stderr)
    return { ...r, yaml: fs.readFileSync(file, 'utf8') }
  }
  /** The memory lines of the container's resources, with their block. */
  const resources = (yaml: string) => /\n {10}resources:\n((?: {12}.*\n)+)/.exec(yaml)?.[1]
  const slurmNeed = (extra: Record<string, string> = {}) => {
    const r = runCli(['sweep', '--slurm', '--dry-run', '--config', config, '--db', db], { env: { ...env, ...extra } })
    assert.equal(r.status, 0, r.stderr)
    const m = /^# memory per array task: --mem=(\d+)G \(requested by moe-harness: one worker needs (\S+ GB)\)$/m.exec(r.stdout)
    assert.ok(m, r.stdout)
    return { gib: m[1]!, bytes: m[2]! }
  }

  it("without --memory: requests and limits the figure sweep --slurm requests, mapped weights whatever this shell's MOE_HARNESS_WEIGHTS", () => {
    const slurm = slurmNeed()
    const inMemory = slurmNeed({ MOE_HARNESS_WEIGHTS: 'memory' })
    assert.notEqual(inMemory.bytes, slurm.bytes, 'the weights in memory need more')
    // The pods do not inherit this environment: the manifest sizes them for mapped weights either way.
    for (const extra of [{}, { MOE_HARNESS_WEIGHTS: 'memory' }] as Record<string, string>[]) {
      const r = manifest(path.join(dir, 'job.yaml'), [], config, extra)
      assert.equal(resources(r.yaml), `            requests:\n              memory: "${slurm.gib}Gi"\n            limits:\n              cpu: "2"\n              memory: "${slurm.gib}Gi"\n`, r.yaml)
      const note = unwrapComments(r.yaml).split('\n').find(l => l.startsWith('# Memory: ')) ?? ''
      assert.ok(note.startsWith(`# Memory: requests and limits of ${slurm.gib}Gi are what one worker of the pool in each pod needs: main process 537 MB + max(scoring: model 'tiny-moe' `), r.yaml)
      assert.ok(note.includes(`/ 85% = ${slurm.bytes}, rounded up to whole GiB`), note)
      assert.match(note, /override with --memory <size> \(or cluster\.memory in the config\), a Kubernetes quantity such as 32Gi\.$/)
      // The header stays before the document.
      assert.ok(unwrapComments(r.yaml).indexOf(note) < unwrapComments(r.yaml).indexOf('apiVersion: batch/v1'))
      assert.doesNotMatch(r.stderr, /warning/)
    }
  })

  it('--memory and cluster.memory set both, as written; the flag wins; below the need it warns', () => {
    const folder = path.join(dir, 'own')
    fs.mkdirSync(folder)
    const own = writeSweepConfig(path.join(folder, 'harness.config.ts'), { ...body, cluster: { ...body.cluster, memory: '24Gi' } })
    const file = path.join(dir, 'own.yaml')
    for (const [args, cfg, value, from] of [[[], own, '24Gi', 'cluster.memory'], [['--memory', '30G'], own, '30G', '--memory'], [['--memory', '3000Mi'], config, '3000Mi', '--memory']] as const) {
      const r = manifest(file, [...args], cfg)
      assert.equal(resources(r.yaml), `            requests:\n              memory: "${value}"\n            limits:\n              cpu: "2"\n              memory: "${value}"\n`, r.yaml)
      assert.match(unwrapComments(r.yaml), new RegExp(`^# Memory: ${from} ${value} as given, as the request and the limit of each pod; one worker of the pool in each pod needs \\S+ GB \\(\\d+Gi\\)`, 'm'))
      assert.doesNotMatch(r.stderr, /warning/)
    }
    const low = manifest(file, ['--memory', '512Mi'])
    assert.match(low.yaml, /\n {14}memory: "512Mi"\n/)
    assert.match(low.stderr, /^warning: --memory 512Mi gives each pod 537 MB, below the \S+ GB \(\d+Gi\) one worker of the pool needs .* drop --memory and the manifest requests \d+Gi\.$/m)
    assert.match(unwrapComments(low.yaml), /^# WARNING: --memory 512Mi = 537 MB per pod is below that need; drop it for \d+Gi\.$/m)
  })

  it('a size that is not a Kubernetes quantity is refused with its code, and nothing is written', () => {
    const file = path.join(dir, 'bad.yaml')
    const r = runCli(['sweep', '--k8s-manifest', file, '--config', config, '--memory', '18g'], { env })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[INVALID_ARGUMENT\]: --memory '18g' is not a Kubernetes memory quantity \(its units are case-sensitive, without a B\): write for example 18Gi \(powers of 1024\) or 18G \(powers of 1000\)\./)
    assert.equal(fs.existsSync(file), false)
    const folder = path.join(dir, 'bad')
    fs.mkdirSync(folder)
    const bad = writeSweepConfig(path.join(folder, 'harness.config.ts'), { ...body, cluster: { memory: '500m' } })
    const c = runCli(['sweep', '--k8s-manifest', file, '--config', bad], { env })
    assert.equal(c.status, 1)
    assert.match(c.stderr, /error \[HARNESS_CONFIG_INVALID\]: \S+harness\.config\.ts is invalid: cluster\.memory: '500m' is not a Kubernetes memory quantity \('m' is milli in Kubernetes: 500m is a fraction of a byte\): write for example 500Mi/)
    assert.equal(fs.existsSync(file), false)
  })

  it('Slurm does not read it: --memory without --k8s-manifest is refused, cluster.memory warned about and the script unchanged', () => {
    // '32GB' too: Slurm users were first told how to write a Kubernetes quantity, then that --memory is not for them.
    for (const [args, size] of [[['--slurm', '--dry-run'], '32Gi'], [[], '32Gi'], [['--slurm', '--dry-run'], '32GB']] as const) {
      const r = runCli(['sweep', ...args, '--config', config, '--db', db, '--memory', size], { env })
      assert.equal(r.status, 1)
      assert.match(r.stderr, /error \[INVALID_ARGUMENT\]: --memory sets the memory of the pods of a Kubernetes manifest \(--k8s-manifest FILE\); .*--sbatch --mem=<size>/)
    }
    const folder = path.join(dir, 'slurm')
    fs.mkdirSync(folder)
    const shared = writeSweepConfig(path.join(folder, 'harness.config.ts'), { ...body, cluster: { ...body.cluster, memory: '64Gi' } })
    const r = runCli(['sweep', '--slurm', '--dry-run', '--config', shared, '--db', db], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /^warning: cluster\.memory 64Gi applies to the Kubernetes manifest only; the Slurm script requests what one worker needs, or the size given with --sbatch --mem=<size>/m)
    assert.match(r.stdout, new RegExp(`^#SBATCH --mem=${slurmNeed().gib}G$`, 'm'))
  })

  it('a model only the pods can see: the manifest is still written, with the given size or with none and a warning', () => {
    const folder = path.join(dir, 'pvc-only')
    fs.mkdirSync(folder)
    const cfg = writeSweepConfig(path.join(folder, 'harness.config.ts'), { ...body, models: { big: path.join(folder, 'models', 'olmoe') } })
    const sized = manifest(path.join(folder, 'sized.yaml'), ['--memory', '32Gi'], cfg)
    assert.match(sized.yaml, /\n {14}memory: "32Gi"\n/)
    assert.match(unwrapComments(sized.yaml), /^# Memory: --memory 32Gi as given, as the request and the limit of each pod \(the models were not opened here/m)
    assert.doesNotMatch(sized.stderr, /^warning: the pods get no memory request/m)
    const unsized = manifest(path.join(folder, 'unsized.yaml'), [], cfg)
    assert.doesNotMatch(unsized.yaml, /memory:/)
    assert.match(unsized.stderr, /^warning: the pods get no memory request: the sweep's models could not be opened here to size it \(.*does not exist.*\); pass --memory <size>/m)
  })
})
