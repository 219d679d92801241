import path from 'node:path'
import type { Command } from 'commander'
import { loadConfig, storeFile } from '../../config/defineConfig.ts'
import { checkOutputDir, type OutputContext } from '../../util/outputPaths.ts'
import { addSweepOptions, sweepExitCode, sweepFromFlags, type SweepFlags } from './sweep.ts'
import { buildReport } from './report.ts'

export function registerStart(program: Command): void {
  const cmd = program
    .command('start')
    .description('The main job: the sweep of harness.config.ts (by default every method on the built-in model at ratios 0, 0.25, 0.5, 0.75), then the leaderboard site.')
  addSweepOptions(cmd)
  cmd.action(async (flags: SweepFlags) => {
    // The site folder is checked before the sweep: a bad report.outDir fails now, not after an hour.
    const loaded = await loadConfig(flags.config)
    const out = path.resolve(loaded.baseDir, loaded.config.report.outDir)
    const output: OutputContext = {
      source: `report.outDir in ${loaded.file ?? 'the config'}`,
      databases: [storeFile(loaded, flags.db)],
      models: Object.values(loaded.config.models).map(m => path.resolve(loaded.baseDir, m)),
    }
    checkOutputDir(out, 'report', output)
    const result = await sweepFromFlags(flags)
    // Unfinished (interrupted, or stopped by a limit of this machine): the rerun of `start` builds the site.
    if (result.interrupted || result.stopped) {
      process.exitCode = sweepExitCode(result)
      return
    }
    const pages = await buildReport(result.db, out, result.config.report.title, output)
    process.stdout.write(`leaderboard: ${pages.length} pages; open ${path.join(out, 'index.html')}\n`)
    // The site lists the failed cells too; the exit status says the sweep is not complete.
    if (result.failed > 0) process.exitCode = 1
  })
}
