// `sweep --slurm` requests the memory an array task needs, through the real CLI on the built-in model:
// the figure is the one the pool inside the task checks (the 'pool:' line of a local sweep of the same
// config), a user's own memory option is kept once, and one below the need is warned about on stderr
// at the dry run and at submission. No Slurm daemons needed (tests/cluster/slurm.test.ts runs the
// request on a real Slurm).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { unwrapComments } from '../helpers/comments.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const GiB = 2 ** 30
const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
  models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'],
  subset: { sample: 8 }, pool: { workers: 1 }, report: { outDir: 'site' }, cluster: { arraySize: 1, cpusPerTask: 2 },
})
// Slurm's input variables would override the script's request: none from the test's own environment.
const env = { MOE_HARNESS_HOME: path.join(dir, 'home'), SBATCH_MEM_PER_NODE: '', SBATCH_MEM_PER_CPU: '', SBATCH_MEM_PER_GPU: '' }
const dryRun = (...args: string[]) => {
  const r = runCli(['sweep', '--slurm', '--dry-run', '--config', config, '--db', path.join(dir, 'results.sqlite'), ...args], { env })
  assert.equal(r.status, 0, r.stderr)
  return { ...r, script: r.stdout.slice(0, r.stdout.indexOf('# ---- plan')), plan: r.stdout.slice(r.stdout.indexOf('# ---- plan')) }
}
const memoryLines = (script: string) => script.split('\n').filter(l => /^#SBATCH --mem/.test(l))
/** formatBytes text ('31.0 MB') back to bytes, to three significant digits. */
const bytesOf = (text: string) => Number(text.split(' ')[0]) * 1000 ** ['B', 'kB', 'MB', 'GB', 'TB'].indexOf(text.split(' ')[1]!)

describe('sweep --slurm requests the memory an array task needs', () => {
  let need: { model: string; worker: string; bytes: number } | undefined

  it("without a memory option: --mem of the pool's own figures for one worker, plus the main process, over 85%, rounded up to whole GiB", () => {
    // What the pool inside a task checks: a local sweep of the same config prints it.
    const local = runCli(['sweep', '--config', config, '--db', path.join(dir, 'local.sqlite')], { env })
    assert.equal(local.status, 0, local.stderr)
    const pool = /pool: 1 worker x \d+ threads? \(model (\S+ \w+) mapped once \+ 1 x (\S+ \w+) per worker.* \+ 3 sessions x (\S+ \w+) \(onnxruntime's state per weight tensor/.exec(local.stderr)
    assert.ok(pool, local.stderr)
    need = { model: pool[1]!, worker: pool[2]!, bytes: 512 * 2 ** 20 + (bytesOf(pool[1]!) + bytesOf(pool[2]!) + 3 * bytesOf(pool[3]!)) / 0.85 }
    const size = Math.ceil(need.bytes / GiB)
    assert.ok(Math.abs(need.bytes / GiB - Math.round(need.bytes / GiB)) > 0.01, 'not at a GiB boundary, where rounding the printed figures could tip it')

    const r = dryRun()
    assert.deepEqual(memoryLines(r.script), [`#SBATCH --mem=${size}G`])
    // Before the first command, or sbatch ignores it.
    const lines = r.script.split('\n')
    assert.ok(lines.indexOf(`#SBATCH --mem=${size}G`) < lines.findIndex(l => l && !l.startsWith('#')))
    const header = unwrapComments(r.script)
    assert.ok(header.includes(`Memory: --mem=${size}G is what one worker of the pool in each task needs: main process 537 MB + (model 'tiny-moe' ${need.model} + 1 worker ${need.worker} at batches of`), r.script)
    assert.match(header, /rounded up to whole GiB .* override with --sbatch --mem=<size> \(or cluster\.sbatch: \['--mem=<size>'\] in the config/)
    assert.match(header, /Threads: --cpus-per-task=2: each worker runs the task's 2 CPUs shared by the workers that fit as intra-op threads/)
    assert.match(r.plan, new RegExp(`^# memory per array task: --mem=${size}G \\(requested by moe-harness: one worker needs \\d\\.\\d\\d GB\\)$`, 'm'))
    assert.doesNotMatch(r.stderr, /warning/)
  })

  it('a memory option of the user is kept, once, in each spelling sbatch reads, with no warning when it is enough', () => {
    for (const [args, line] of [
      [['--sbatch', '--mem=64G'], '#SBATCH --mem=64G'],
      [['--sbatch', '--mem 64G'], '#SBATCH --mem 64G'],
      [['--sbatch', 'mem=64G'], '#SBATCH --mem=64G'],
      [['--sbatch', '--mem-per-cpu=32G', '--sbatch', '--qos=long'], '#SBATCH --mem-per-cpu=32G'],
      [['--sbatch', '--mem-per-c=32768'], '#SBATCH --mem-per-c=32768'],
      // Trimmed as it is read: written untrimmed it was '#SBATCH -- --mem=64G', which sbatch refuses.
      [['--sbatch', ' --mem=64G'], '#SBATCH --mem=64G'],
    ] as const) {
      const r = dryRun(...args)
      assert.deepEqual(memoryLines(r.script), [line], `${args.join(' ')}:\n${r.script}`)
      assert.match(r.script, /^# Memory: \S+( \S+)? as given; one worker of the pool in each task needs /m)
      assert.match(r.plan, /^# memory per array task: \S+( \S+)? \(as given; one worker needs \d\.\d\d GB\)$/m)
      assert.doesNotMatch(r.stderr, /warning/, args.join(' '))
    }
    // From the config's cluster.sbatch, as it is written there.
    const folder = path.join(dir, 'own-mem')
    fs.mkdirSync(folder)
    const own = writeSweepConfig(path.join(folder, 'harness.config.ts'), {
      models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'],
      subset: { sample: 4 }, cluster: { arraySize: 1, sbatch: ['mem=48G'] },
    })
    const r = runCli(['sweep', '--slurm', '--dry-run', '--config', own], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(memoryLines(r.stdout), ['#SBATCH --mem=48G'])
  })

  it('a memory option below the need: kept, and a warning on stderr naming both figures and the fix, at the dry run and at submission', () => {
    assert.ok(need, 'the first test measured the need')
    const size = `${Math.ceil(need.bytes / GiB)}G`
    const r = dryRun('--sbatch', '--mem 100M')
    assert.deepEqual(memoryLines(r.script), ['#SBATCH --mem 100M'], 'the user option is kept and no other added')
    const warning = new RegExp(`warning: --mem 100M asks 105 MB per array task, below the \\d\\.\\d\\d GB \\(--mem=${size}\\) one worker of the pool needs \\(main process 537 MB \\+ \\(model 'tiny-moe' ${need.model.replace('.', '\\.')} .*\\): ` +
      `the task will likely be killed for memory.*request --mem=${size} with --sbatch or in cluster\\.sbatch of the config, or drop the memory option and moe-harness requests --mem=${size}\\.\\n`)
    assert.match(r.stderr, warning)
    assert.match(unwrapComments(r.script), new RegExp(`WARNING: --mem 100M = 105 MB per task is below that need; request --mem=${size}`))
    assert.match(r.plan, /^# memory per array task: --mem 100M \(as given; one worker needs \d\.\d\d GB\), BELOW THE NEED: see the warning on stderr$/m)
    // Per CPU, times the task's CPUs.
    const perCpu = dryRun('--sbatch', 'mem-per-cpu=100M')
    assert.match(perCpu.stderr, new RegExp(`warning: --mem-per-cpu=100M x 2 CPUs \\(--cpus-per-task\\) asks 210 MB per array task, .*request --mem=${size} \\(or --mem-per-cpu=1G with 2 CPUs\\)`))

    // Submitting (no Slurm here: sbatch is not on PATH): the same warning, before Slurm is asked.
    const bin = path.join(dir, 'node-only')
    fs.mkdirSync(bin, { recursive: true })
    fs.symlinkSync(process.execPath, path.join(bin, 'node'))
    fs.mkdirSync(path.join(dir, 'submit'))
    const submit = runCli(['sweep', '--slurm', '--config', config, '--db', path.join(dir, 'submit', 'results.sqlite'), '--sbatch', '--mem 100M'], { env: { ...env, PATH: bin } })
    assert.equal(submit.status, 1)
    assert.match(submit.stderr, warning)
    assert.match(submit.stderr, /error \[SLURM_UNAVAILABLE\]: 'sbatch' is not on PATH/)
    assert.ok(submit.stderr.indexOf('warning: --mem 100M') < submit.stderr.indexOf('SLURM_UNAVAILABLE'))
    // The script written for submission requests what the user asked, and says it is below the need.
    const written = fs.readFileSync(path.join(dir, 'submit', 'slurm-results', 'sweep.sbatch'), 'utf8')
    assert.deepEqual(memoryLines(written), ['#SBATCH --mem 100M'])
    assert.match(written, /^# WARNING: --mem 100M = 105 MB per task is below that need/m)
  })
})
