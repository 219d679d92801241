import path from 'node:path'
import type { Command } from 'commander'
import { addSweepOptions, sweepFromFlags, type SweepFlags } from './sweep.ts'
import { buildReport } from './report.ts'

export function registerStart(program: Command): void {
  const cmd = program
    .command('start')
    .description('The main job: the sweep of harness.config.ts (by default every method on the built-in model at ratios 0, 0.25, 0.5, 0.75), then the leaderboard site.')
  addSweepOptions(cmd)
  cmd.action(async (flags: SweepFlags) => {
    const result = await sweepFromFlags(flags)
    if (result.interrupted) {
      process.exitCode = 130
      return
    }
    const out = path.resolve(result.baseDir, result.config.report.outDir)
    const pages = await buildReport(result.db, out, result.config.report.title)
    process.stdout.write(`leaderboard: ${pages.length} pages; open ${path.join(out, 'index.html')}\n`)
  })
}
