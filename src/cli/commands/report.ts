import path from 'node:path'
import type { Command } from 'commander'
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

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('Render the static leaderboard site from the results store (never re-evaluates); opens from file:// with no network.')
    .requiredOption('--db <file>', 'SQLite results store')
    .option('--out <dir>', 'output folder: created, or replaced atomically when moe-harness wrote it', 'reports/site')
    .option('--title <text>', 'site title', 'MoE sparsification leaderboard')
    .action(async (flags: { db: string; out: string; title: string }) => {
      const pages = await buildReport(flags.db, flags.out, flags.title)
      process.stdout.write(`wrote ${pages.length} pages to ${flags.out}; open ${path.resolve(flags.out, 'index.html')}\n`)
    })
}
