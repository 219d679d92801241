import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project root (the folder holding package.json, tasks/, methods/, reports/). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const TASKS_DIR = path.join(ROOT, 'tasks')
export const TASK_DATA_DIR = path.join(ROOT, 'tasks', 'data')
export const METHODS_DIR = path.join(ROOT, 'methods')
export const REPORTS_DIR = path.join(ROOT, 'reports')
export const MODELS_DIR = path.join(ROOT, 'models')

/** Where users keep local copies of the standard datasets (arc_easy/test.jsonl, ...). */
export function defaultDataDir(): string {
  return path.resolve(process.env.MOE_HARNESS_DATA ?? 'data')
}
