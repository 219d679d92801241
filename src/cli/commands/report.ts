import fs from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import { configSchema, loadConfig } from '../../config/defineConfig.ts'
import { summarize } from '../../report/leaderboardData.ts'
import { renderSite } from '../../report/renderSite.ts'
import { ResultsStore } from '../../store/resultsStore.ts'
import { checkOutputDir, type OutputContext } from '../../util/outputPaths.ts'
import { modelsOf } from '../outputRules.ts'

/**
 * Renders the site of `db` into `outDir` (see src/util/outputPaths.ts for when `outDir` may be
 * replaced: `output.source` names it in messages, `output.models` adds model folders to keep clear of;
 * the database and the models it refers to are always kept clear of). Returns the page file names.
 */
export async function buildReport(db: string, outDir: string, title: string, output: OutputContext = { source: '--out' }): Promise<string[]> {
  const store = new ResultsStore(db, { readonly: true })
  try {
    const ctx: OutputContext = { ...output, databases: [...(output.databases ?? []), db], models: [...(output.models ?? []), ...modelsOf(store)] }
    // Refuse a bad --out before the (long) rendering.
    checkOutputDir(outDir, 'report', ctx)
    return await renderSite(summarize(store, title), outDir, ctx)
  } finally {
    store.close()
  }
}

/**
 * The site folder, title and output context of `report`: the flags, else the config's `report.outDir`
 * (relative to the config's folder) and `report.title`, else the config defaults. The config is
 * `--config`, else ./harness.config.ts when it exists (as for sweep and start), and is read only when
 * --out or --title is absent. Errors: HARNESS_CONFIG_INVALID (a config that does not load).
 */
export async function reportTarget(flags: { out?: string; title?: string; config?: string }): Promise<{ out: string; title: string; output: OutputContext }> {
  const useConfig = flags.out === undefined || flags.title === undefined
  const file = flags.config ?? (fs.existsSync('harness.config.ts') ? 'harness.config.ts' : undefined)
  const loaded = useConfig && file !== undefined ? await loadConfig(file) : undefined
  // Without a config, the config's own defaults (one owner: the schema in defineConfig.ts).
  const report = loaded?.config.report ?? configSchema.shape.report.parse(undefined)
  const out = flags.out ?? (loaded ? path.resolve(loaded.baseDir, report.outDir) : report.outDir)
  const output: OutputContext = flags.out === undefined && loaded
    ? { source: `report.outDir in ${loaded.file}`, models: Object.values(loaded.config.models).map(m => path.resolve(loaded.baseDir, m)) }
    : { source: '--out' }
  return { out, title: flags.title ?? report.title, output }
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('Render the static leaderboard site from the results store (never re-evaluates); opens from file:// with no network.')
    .requiredOption('--db <file>', 'SQLite results store')
    .option('--out <dir>', "output folder: created, or replaced atomically when moe-harness wrote it (default: the config's report.outDir, reports/site)")
    .option('--title <text>', "site title (default: the config's report.title, 'MoE sparsification leaderboard')")
    .option('--config <file>', 'harness config giving report.outDir and report.title when --out / --title are absent (default: ./harness.config.ts when it exists)')
    .action(async (flags: { db: string; out?: string; title?: string; config?: string }) => {
      const { out, title, output } = await reportTarget(flags)
      const pages = await buildReport(flags.db, out, title, output)
      process.stdout.write(`wrote ${pages.length} pages to ${out}; open ${path.resolve(out, 'index.html')}\n`)
    })
}
