// A copy of the project in a test's folder, node_modules linked: tests that write plugins into
// methods/ or edit harness files work on the copy, never on the shared tree.
import fs from 'node:fs'
import path from 'node:path'
import { ROOT } from './cli.ts'

/** Copies `entries` of the repository (folders or files) into `project` (created), links node_modules and, with `model`, models/tiny-moe. Returns `project`. */
export function copyProject(project: string, entries: readonly string[], o: { model?: boolean } = {}): string {
  fs.mkdirSync(project, { recursive: true })
  for (const entry of entries) fs.cpSync(path.join(ROOT, entry), path.join(project, entry), { recursive: true })
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(project, 'node_modules'))
  if (o.model) {
    fs.mkdirSync(path.join(project, 'models'))
    fs.symlinkSync(path.join(ROOT, 'models/tiny-moe'), path.join(project, 'models/tiny-moe'))
  }
  return project
}

/**
 * Writes methods/<name>.ts into `project`: an expert-pruning plugin with a ratio parameter whose apply
 * destructures `applyArgs` and runs `body` on line 9 of the file (error locations name that line);
 * `importLine` is the file's first line.
 */
export function writeMethodPlugin(project: string, name: string, o: { importLine: string; applyArgs: string; body: string }): void {
  fs.writeFileSync(path.join(project, 'methods', `${name}.ts`), [
    o.importLine,
    "import { defineMethod, p } from '../src/index.ts'",
    'export default defineMethod({',
    `  name: '${name}',`,
    "  description: 'test plugin',",
    "  family: 'expert-pruning',",
    '  params: { ratio: p.ratio() },',
    `  apply({ ${o.applyArgs} }) {`,
    `    ${o.body}`, // line 9
    '  },',
    '})',
    '',
  ].join('\n'))
}
