// Which cells of a sweep a store already holds, found without preparing any variant: a cell is looked
// up under the same run key the sweep stores it with (variant id → the store's content hash → run key).
// `sweep --slurm` asks this of the main store (cells not to score again) and of each shard's file
// (what a shard finished, and why its other cells failed).
import fs from 'node:fs'
import { calibrationKey } from '../calibration/cache.ts'
import { formatError } from '../errors.ts'
import { failedVariantKey } from '../identity/keys.ts'
import { ResultsStore } from '../store/resultsStore.ts'
import { variantId } from '../variants/prepare.ts'
import { cellName, cellRunKey, storedError, type Cell } from './cell.ts'
import type { SweepInputs } from './inputs.ts'
import { cellKey } from './plan.ts'

export interface IndexedCell {
  /** plan.ts cellKey: the identity shards hash and `--skip-cells` lists. */
  key: string
  /** 'model method params task', as the sweep's failure summary names a cell. */
  name: string
  cell: Cell
  /** The ready variant's id (null when the variant is infeasible). */
  variantId: string | null
}

export type StoredCellState = { state: 'complete' } | { state: 'failed'; error: string } | { state: 'missing' }

/** Every cell of the inputs with its variant id (computed as the sweep's preparation computes it). */
export async function indexCells(inputs: SweepInputs): Promise<IndexedCell[]> {
  const out: IndexedCell[] = []
  for (const slot of inputs.slots) {
    let id: string | null = null
    if (slot.planned.status === 'planned') {
      const plan = slot.planned.plan
      id = variantId(slot.ckpt, plan, plan.needs.length ? await calibrationKey(slot.ckpt, inputs.calibration(slot.ckpt)) : null)
    }
    for (const task of inputs.tasks) {
      const cell: Cell = { slot, data: inputs.taskData.get(task.name)! }
      out.push({ key: cellKey(slot.spec, task.name), name: cellName(cell), cell, variantId: id })
    }
  }
  return out
}

/**
 * The state of each cell in the store `file`, by cell key: complete (its run is stored complete),
 * failed (a failed run, or its variant failed to prepare: the error as the sweep summary prints it)
 * or missing (no row; also when the file does not exist).
 */
export function storedCells(cells: readonly IndexedCell[], inputs: SweepInputs, file: string): Map<string, StoredCellState> {
  const out = new Map<string, StoredCellState>()
  if (!fs.existsSync(file)) {
    for (const c of cells) out.set(c.key, { state: 'missing' })
    return out
  }
  const store = new ResultsStore(file, { readonly: true })
  try {
    for (const c of cells) {
      const ready = c.variantId ? store.variant(c.variantId) : undefined
      if (ready?.status === 'ready' && ready.content_hash) {
        const run = store.run(cellRunKey(c.cell, { contentHash: ready.content_hash }, { inputs }))
        out.set(c.key, !run ? { state: 'missing' } : run.status === 'complete' ? { state: 'complete' } : { state: 'failed', error: formatError(storedError(run)) })
        continue
      }
      const failed = store.variant(failedVariantKey(c.cell.slot.spec))
      out.set(c.key, failed?.status === 'failed' ? { state: 'failed', error: formatError(storedError(failed)) } : { state: 'missing' })
    }
  } finally {
    store.close()
  }
  return out
}
