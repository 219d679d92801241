import type { Command } from 'commander'
import path from 'node:path'
import { HarnessError } from '../../errors.ts'
import { defaultDataDir, TASK_DATA_DIR } from '../../paths.ts'
import { dataFileOf, loadAllTasks, loadTaskDocs } from '../../tasks/registry.ts'

export function registerTasks(program: Command): void {
  program
    .command('tasks')
    .description('List the tasks with their kind, metrics, item counts and where their data is (each data file is validated as eval reads it).')
    .option('--data-dir <dir>', 'folder with local copies of the standard datasets (default: $MOE_HARNESS_DATA or ./data)')
    .option('--json', 'print the list as JSON')
    .action(async (flags: { dataDir?: string; json?: boolean }) => {
      const dataDir = flags.dataDir ?? defaultDataDir()
      const rows = []
      for (const task of await loadAllTasks()) {
        const folder = task.data.builtIn ? TASK_DATA_DIR : path.resolve(dataDir)
        const file = dataFileOf(task, dataDir)
        // The same loading and record checks as eval, so a count shown here is one eval accepts.
        let items: number | null = null
        let invalid: string | undefined
        if (file) {
          try {
            items = (await loadTaskDocs(task, dataDir)).docs.length
          } catch (e) {
            if (!(e instanceof HarnessError)) throw e
            invalid = `${e.code}: ${e.message}`
          }
        }
        rows.push({
          name: task.name, version: task.version, kind: task.kind, builtIn: Boolean(task.data.builtIn), items, invalid, metrics: task.metrics, primary: task.primaryMetric,
          file: file ?? null, searched: file ? undefined : folder, howToGet: file ? undefined : task.data.howToGet, description: task.description,
        })
      }
      if (flags.json) {
        process.stdout.write(JSON.stringify(rows) + '\n')
        return
      }
      const w = Math.max(...rows.map(r => r.name.length))
      for (const r of rows) {
        const count = r.invalid ? 'invalid' : r.items === null ? 'data missing' : `${r.items} items`
        process.stdout.write(`${r.name.padEnd(w)}  ${r.kind.padEnd(15)}  ${count.padEnd(12)}  ${r.primary.padEnd(16)}  ${r.builtIn ? 'built-in' : r.file ?? ''}\n`)
        if (r.invalid) process.stdout.write(`${' '.repeat(w)}  → invalid: ${r.invalid}\n`)
        else if (r.items === null) process.stdout.write(`${' '.repeat(w)}  → no data in ${r.searched}: ${r.howToGet}\n`)
      }
    })
}
