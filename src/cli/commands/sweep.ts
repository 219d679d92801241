import type { Command } from 'commander'
import { loadConfig, type HarnessConfig } from '../../config/defineConfig.ts'
import { fail } from '../../errors.ts'
import { parseShard } from '../../sweep/plan.ts'
import { runSweep, type SweepSummary } from '../../sweep/runSweep.ts'
import { createProgress } from '../progress.ts'

export interface SweepFlags {
  config?: string
  db?: string
  shard?: string
  workers?: string
  threads?: string
  json?: boolean
}

export function addSweepOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'harness config (default: ./harness.config.ts)')
    .option('--db <file>', 'SQLite results store (default: the config\'s store)')
    .option('--shard <i/n>', 'run only shard i of n (0-based, e.g. $SLURM_ARRAY_TASK_ID/8); combine shards with `moe-harness merge`')
    .option('--workers <n>', 'pool workers (overrides the config)')
    .option('--threads <n>', 'intra-op threads per worker (overrides the config)')
}

export function registerSweep(program: Command): void {
  const cmd = program
    .command('sweep')
    .description('Evaluate models × methods × ratios × tasks from harness.config.ts into the SQLite store; resumable, safe to interrupt.')
    .option('--json', 'print a JSON summary as the last line')
  addSweepOptions(cmd)
  cmd.addHelpText('after', `
Complete cells are skipped, so rerunning after a crash or Ctrl-C resumes where it stopped.
Examples:
  moe-harness sweep
  moe-harness sweep --config my.config.ts --db results.sqlite --shard 0/4
`)
  cmd.action(async (flags: SweepFlags) => {
    const summary = await sweepFromFlags(flags)
    if (flags.json) process.stdout.write(JSON.stringify(summary) + '\n')
    if (summary.interrupted) process.exitCode = 130
  })
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) fail('INVALID_ARGUMENT', `${flag} must be a positive integer, got '${v}'.`)
  return n
}

export async function sweepFromFlags(flags: SweepFlags): Promise<SweepSummary & { db: string; config: HarnessConfig; baseDir: string }> {
  const loaded = await loadConfig(flags.config)
  const config = structuredClone(loaded.config)
  if (flags.workers) config.pool.workers = positiveInt('--workers', flags.workers)
  if (flags.threads) config.pool.threads = positiveInt('--threads', flags.threads)
  const db = flags.db ?? config.store
  const controller = new AbortController()
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130)
    process.stderr.write('\ninterrupted: finishing the database write in progress; rerun to resume (Ctrl-C again to quit at once)\n')
    controller.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  let bar: ReturnType<typeof createProgress> | undefined
  try {
    const summary = await runSweep({
      config, baseDir: loaded.baseDir, db, shard: parseShard(flags.shard), signal: controller.signal,
      log: line => process.stderr.write(`${line}\n`),
      onProgress: p => { (bar ??= createProgress('sweep', p.total)).update(p.done, p.label) },
    })
    bar?.stop()
    const t = summary.timings
    const workers = config.pool.workers
    const outside = t.calibration + t.transform + t.database + t.sessionBuild / workers
    process.stderr.write(`sweep: ${summary.completed} cells scored, ${summary.skipped} already complete, ${summary.failed} failed, in ${t.total.toFixed(1)} s; ` +
      `onnxruntime scoring ${(t.scoring / workers).toFixed(1)} s per worker; outside scoring: calibration ${t.calibration.toFixed(1)} s, transforms ${t.transform.toFixed(1)} s, ` +
      `session builds ${(t.sessionBuild / workers).toFixed(1)} s per worker, database ${t.database.toFixed(1)} s = ${((100 * outside) / Math.max(t.total, 1e-9)).toFixed(1)}% of the sweep\n`)
    return { ...summary, db, config, baseDir: loaded.baseDir }
  } finally {
    bar?.stop()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
