// What `sweep --slurm --dry-run` prints and `--k8s-manifest` writes, and the errors without Slurm:
// no daemons needed. The scripts are checked for content a Slurm user expects and with `bash -n`.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { unwrapComments } from '../helpers/comments.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const config = path.join(dir, 'harness.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') },
  methods: ['frequency-pruning', 'neuron-top-k'],
  ratios: [0, 0.25, 0.5],
  tasks: ['brown-cloze', 'brown-agreement'],
  store: 'out/results.sqlite',
  cluster: { partition: 'gpu', account: 'moe-lab', time: '04:00:00', gpusPerTask: 1, cpusPerTask: 8, arraySize: 5, sbatch: ['--mem=64G'] },
}, null, 2)})\n`)
const listing = () => fs.readdirSync(dir).sort()

describe('cluster job files', () => {
  it('--slurm --dry-run prints a commented sbatch array script and the plan, and writes nothing', () => {
    const before = listing()
    const r = runCli(['sweep', '--slurm', '--dry-run', '--config', config, '--account', 'other-lab', '--sbatch', '--qos=long'], { cwd: dir })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(listing(), before, 'a dry run creates no file')
    const script = r.stdout.slice(0, r.stdout.indexOf('# ---- plan'))
    const state = path.join(dir, 'out', 'slurm-results')
    assert.match(script, /^#!\/bin\/bash\n/)
    // Config defaults, with the CLI flags winning.
    for (const line of ['--job-name=moe-harness-sweep', '--array=0-4', `--output=${state}/logs/shard-%A_%a.log`, '--open-mode=append', `--chdir=${dir}`, '--ntasks=1',
      '--cpus-per-task=8', '--gpus-per-task=1', '--time=04:00:00', '--partition=gpu', '--account=other-lab', '--qos=long']) {
      assert.ok(script.includes(`#SBATCH ${line}\n`), `missing #SBATCH ${line}:\n${script}`)
    }
    assert.ok(!script.includes('--mem=64G'), '--sbatch on the command line replaces cluster.sbatch')
    assert.match(script, /\nset -euo pipefail\n/)
    assert.match(script, /^# .*12 cells/m)
    assert.match(script, /exec node \S+bin\/moe-harness\.mjs sweep \\\n {2}--config \S+harness\.config\.ts \\\n {2}--shard "\$\{SHARD\}\/\$\{SHARDS\}" \\\n {2}--db "\$\{STATE_DIR\}\/shards\/shard-\$\{SHARD\}-of-\$\{SHARDS\}\.sqlite" \\\n {2}"\$@"\n/)
    // The by-hand example names a shard that exists (0-4 here).
    assert.match(script, /^# {10}sbatch --array=4 \S+sweep\.sbatch {2}\(shard 4 only\)$/m)
    // GPUs requested while the config scores on the CPU: a warning that says how to fix it.
    assert.match(r.stderr, /warning: cluster\.gpusPerTask 1 reserves GPUs for every shard, but device is 'cpu' in \S+harness\.config\.ts \(the default\).*set device: 'cuda'/)
    // #SBATCH lines must come before the first command, or sbatch ignores them.
    const firstCommand = script.split('\n').findIndex(l => l && !l.startsWith('#'))
    assert.ok(script.split('\n').slice(firstCommand).every(l => !l.startsWith('#SBATCH')))
    const file = path.join(dir, 'check.sbatch')
    fs.writeFileSync(file, script)
    const syntax = spawnSync('bash', ['-n', file], { encoding: 'utf8' })
    fs.rmSync(file)
    assert.equal(syntax.status, 0, syntax.stderr)
    // The plan: every cell once, in the shard that owns it.
    const plan = r.stdout.slice(r.stdout.indexOf('# ---- plan'))
    assert.match(plan, /12 cells in 5 shards/)
    assert.equal(plan.match(/^# +tiny-moe /gm)?.length, 12)
    const sizes = [...plan.matchAll(/shard (\d) \((\d+) cells\)/g)].map(m => Number(m[2]))
    assert.equal(sizes.reduce((a, b) => a + b, 0), 12)
    assert.match(script, new RegExp(`cells per shard: ${sizes.join(', ')}`))
  })

  it('the script runs one shard when Slurm starts it (SLURM_ARRAY_TASK_ID), and refuses to run outside an array', () => {
    const r = runCli(['sweep', '--slurm', '--dry-run', '--config', config, '--array-size', '2', '--gpus-per-task', '0'], { cwd: dir })
    assert.doesNotMatch(r.stderr, /warning/, 'no GPU requested, no warning')
    assert.match(r.stdout, /^# {10}sbatch --array=1 \S+sweep\.sbatch {2}\(shard 1 only\)$/m)
    const script = r.stdout.slice(0, r.stdout.indexOf('# ---- plan'))
    // Run it with `node` replaced by a stub that prints its arguments.
    const bin = path.join(dir, 'stub-bin')
    fs.mkdirSync(bin, { recursive: true })
    fs.writeFileSync(path.join(bin, 'node'), '#!/bin/bash\nprintf "%s\\n" "$@"\n', { mode: 0o755 })
    const file = path.join(dir, 'run.sbatch')
    fs.writeFileSync(file, script)
    try {
      const ok = spawnSync('bash', [file], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin`, SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_JOB_ID: '77' } })
      assert.equal(ok.status, 0, ok.stderr)
      const args = ok.stdout.trim().split('\n')
      assert.match(args[0], /moe-harness shard 1\/2: job 77_1 on /)
      assert.deepEqual(args.slice(2), ['sweep', '--config', config, '--shard', '1/2', '--db', path.join(dir, 'out', 'slurm-results', 'shards', 'shard-1-of-2.sqlite')])
      // With the list of cells the store already holds (written at submission), the shard skips them.
      const skip = path.join(dir, 'out', 'slurm-results', 'complete-cells.json')
      fs.writeFileSync(skip, '{"cells": []}\n')
      const skipping = spawnSync('bash', [file], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin`, SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_JOB_ID: '77' } })
      assert.deepEqual(skipping.stdout.trim().split('\n').slice(2), ['sweep', '--config', config, '--shard', '0/2', '--db', path.join(dir, 'out', 'slurm-results', 'shards', 'shard-0-of-2.sqlite'), '--skip-cells', skip])
      const outside = spawnSync('bash', [file], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin` } })
      assert.notEqual(outside.status, 0)
      assert.match(outside.stderr, /run this script with sbatch --array/)
    } finally {
      fs.rmSync(file)
      fs.rmSync(path.join(dir, 'out'), { recursive: true, force: true })
    }
  })

  it('--k8s-manifest writes an Indexed Job: one completion per shard, JOB_COMPLETION_INDEX as the shard', () => {
    const file = path.join(dir, 'job.yaml')
    const r = runCli(['sweep', '--k8s-manifest', file, '--config', config, '--array-size', '3', '--image', 'registry.example/moe:1'], { cwd: dir })
    assert.equal(r.status, 0, r.stderr)
    const yaml = fs.readFileSync(file, 'utf8')
    for (const line of ['kind: Job', '  completionMode: Indexed', '  completions: 3', '  parallelism: 3', '      restartPolicy: Never',
      '          image: "registry.example/moe:1"', '            claimName: "moe-harness"', '              nvidia.com/gpu: "1"', '              cpu: "8"']) {
      assert.ok(yaml.includes(`${line}\n`), `missing '${line}':\n${yaml}`)
    }
    // Each pod requests and is limited to what one worker needs (tests/cluster/k8s-memory.test.ts), not cluster.sbatch's Slurm --mem=64G.
    const memory = /\n {10}resources:\n {12}requests:\n {14}memory: "(\d+Gi)"\n {12}limits:\n {14}cpu: "8"\n {14}nvidia\.com\/gpu: "1"\n {14}memory: "(\d+Gi)"\n/.exec(yaml)
    assert.ok(memory && memory[1] === memory[2], yaml)
    // The header's notes are paragraphs of lines a terminal shows whole (a word longer than that, a path, keeps a line of its own).
    for (const line of yaml.split('\n').filter(l => l.startsWith('#'))) assert.ok(line.length <= 100 || !/\S \S/.test(line.slice(2).trim()), line)
    assert.match(unwrapComments(yaml), new RegExp(`^# Memory: requests and limits of ${memory[1]} are what one worker of the pool in each pod needs: `, 'm'))
    assert.doesNotMatch(yaml, /64G/)
    const args = JSON.parse(/ {10}args: (\[.*\])\n/.exec(yaml)![1]) as string[]
    assert.equal(args.length, 1)
    // The claim holds the config's folder and is mounted at the same path: every path means the same file in the pod.
    assert.ok(yaml.includes(`              mountPath: ${JSON.stringify(dir)}\n`), yaml)
    assert.ok(yaml.includes(`          workingDir: ${JSON.stringify(dir)}\n`), yaml)
    const state = path.join(dir, 'out', 'slurm-results', 'shards')
    assert.equal(args[0], `set -euo pipefail; mkdir -p ${state} && exec node ${path.join(ROOT, 'bin', 'moe-harness.mjs')} sweep --config ${config} --shard "\${JOB_COMPLETION_INDEX}/3" --db "${state}/shard-\${JOB_COMPLETION_INDEX}-of-3.sqlite"`)
    // What lies outside that folder (here the checkout and the model, not the config or the store) is named, with the fix.
    for (const [what, p] of [['the project checkout (bin/moe-harness.mjs)', path.join(ROOT, 'bin', 'moe-harness.mjs')], ["model 'tiny-moe'", path.join(ROOT, 'models', 'tiny-moe')]]) {
      assert.ok(r.stderr.includes(`  ${what}: ${p}\n`), r.stderr)
      assert.ok(unwrapComments(yaml).includes(`# WARNING: the pod cannot see ${what}, ${p}: it is outside ${dir}; move it inside, or mount it yourself.\n`), yaml)
    }
    assert.match(r.stderr, /WARNING: the pods mount the claim 'moe-harness' at \S+ \(the config's folder\), so they cannot see:\n/)
    assert.match(r.stderr, /Move these inside \S+ \(or put the config in a folder that holds the project, the models and the store\)/)
    assert.doesNotMatch(r.stderr, /the config:|the shard files/)
    // Each line is `key: value` or a list item, indented by two spaces per level (no tabs).
    for (const line of yaml.split('\n').filter(l => l && !l.startsWith('#'))) assert.match(line, /^( {2})*(- )?[\w.\/-]+:( .+)?$|^( {2})*- /, line)
    // It never replaces a file it did not write.
    const other = path.join(dir, 'notes.yaml')
    fs.writeFileSync(other, 'mine: true\n')
    const refused = runCli(['sweep', '--k8s-manifest', other, '--config', config], { cwd: dir })
    assert.equal(refused.status, 1)
    assert.match(refused.stderr, /OUTPUT_UNSAFE.*notes\.yaml already exists and is not a Kubernetes manifest of moe-harness/)
    // Its own earlier manifest is replaced.
    assert.equal(runCli(['sweep', '--k8s-manifest', file, '--config', config, '--array-size', '2'], { cwd: dir }).status, 0)
    assert.match(fs.readFileSync(file, 'utf8'), /\n {2}completions: 2\n/)
    assert.equal(fs.readFileSync(other, 'utf8'), 'mine: true\n')
  })

  it('cells the store already holds are not planned again: the dry run lists only the missing ones, and with none missing --slurm submits nothing', () => {
    const small = path.join(dir, 'small')
    fs.mkdirSync(small)
    const smallConfig = path.join(small, 'harness.config.ts')
    fs.writeFileSync(smallConfig, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
      models: { 'tiny-moe': path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0, 0.5], tasks: ['brown-cloze', 'brown-agreement'],
      subset: { sample: 4 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 }, report: { outDir: 'site' },
    })})\n`)
    const db = path.join(small, 'results.sqlite')
    const env = { MOE_HARNESS_HOME: path.join(small, 'home') }
    // Half the cells first (shard 0 of 2, as a local sweep would store them).
    const local = runCli(['sweep', '--config', smallConfig, '--db', db, '--shard', '0/2', '--json'], { env })
    assert.equal(local.status, 0, local.stderr)
    const held = lastJson(local.stdout).completed as number
    assert.ok(held > 0 && held < 4, `shard 0/2 holds some of the 4 cells (${held})`)
    const dry = runCli(['sweep', '--slurm', '--dry-run', '--config', smallConfig, '--db', db, '--array-size', '2'], { env })
    assert.equal(dry.status, 0, dry.stderr)
    assert.match(dry.stdout, new RegExp(`# ${4 - held} cells in 2 shards \\(${held} of 4 cells already complete in \\S+results\\.sqlite, not run again\\):`))
    assert.equal(dry.stdout.match(/^# {5}tiny-moe /gm)?.length, 4 - held)
    assert.match(dry.stdout, /^# {3}shard 0 \(0 cells\)$/m, 'shard 0 has nothing left to run')
    // All of them: --slurm needs no Slurm at all (sbatch is not on PATH), says so, and builds the report.
    assert.equal(runCli(['sweep', '--config', smallConfig, '--db', db], { env }).status, 0)
    const bin = path.join(small, 'node-only')
    fs.mkdirSync(bin)
    fs.symlinkSync(process.execPath, path.join(bin, 'node'))
    const slurm = runCli(['sweep', '--slurm', '--config', smallConfig, '--db', db, '--array-size', '2', '--json'], { cwd: small, env: { ...env, PATH: bin } })
    assert.equal(slurm.status, 0, slurm.stderr)
    assert.match(slurm.stderr, /all 4 cells already complete in \S+results\.sqlite \(all 2 shards already complete\); nothing to submit/)
    const result = lastJson(slurm.stdout)
    assert.deepEqual(result.submitted, [])
    assert.deepEqual(result.cells, { total: 4, held: 4, toRun: 0 })
    assert.ok(fs.existsSync(path.join(small, 'site', 'index.html')), 'the report was built')
  })

  it('without sbatch on PATH: a clear SLURM_UNAVAILABLE error', () => {
    const bin = path.join(dir, 'node-only')
    fs.mkdirSync(bin, { recursive: true })
    fs.symlinkSync(process.execPath, path.join(bin, 'node'))
    const r = runCli(['sweep', '--slurm', '--config', config, '--db', path.join(dir, 'r-none.sqlite')], { env: { PATH: bin } })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[SLURM_UNAVAILABLE\]: 'sbatch' is not on PATH: run `moe-harness sweep --slurm` on a Slurm login node.*--dry-run/)
  })
})
