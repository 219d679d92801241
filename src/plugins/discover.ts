// Plugins (tasks, methods) are files in a folder, each default-exporting one plain object whose
// `name` equals the file name. The registry is the directory listing plus that check.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { fail, type ErrorCode } from '../errors.ts'
import { unknownName } from '../util/suggest.ts'

export interface Named { name: string }

export function pluginFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>()
  if (!fs.existsSync(dir)) return files
  for (const f of fs.readdirSync(dir).sort()) {
    if (!/^[a-z0-9][a-z0-9-]*\.ts$/.test(f)) continue
    files.set(f.replace(/\.ts$/, ''), path.join(dir, f))
  }
  return files
}

export async function loadPlugin<T extends Named>(kind: string, dir: string, name: string, code: ErrorCode): Promise<T> {
  const files = pluginFiles(dir)
  const file = files.get(name)
  if (!file) unknownName(kind, name, [...files.keys()])
  let mod: { default?: T }
  try {
    mod = await import(pathToFileURL(file).href)
  } catch (e) {
    fail(code, `${kind} file ${file} failed to load: ${(e as Error).message}`, e)
  }
  const plugin = mod.default
  if (!plugin || typeof plugin !== 'object') {
    const named = Object.keys(mod).filter(k => k !== 'default')
    fail(code, `${file} must default-export a ${kind} object (export default define…({...}))${named.length ? `; it exports ${named.map(n => `'${n}'`).join(', ')}: make the ${kind} its default export` : ''}.`)
  }
  if (plugin.name !== name) fail(code, `${file} exports ${kind} '${plugin.name}' but the file is named '${name}'; the name must equal the file name.`)
  return plugin
}

export async function loadAllPlugins<T extends Named>(kind: string, dir: string, code: ErrorCode): Promise<T[]> {
  const out: T[] = []
  for (const name of pluginFiles(dir).keys()) out.push(await loadPlugin<T>(kind, dir, name, code))
  return out
}
