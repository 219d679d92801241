// The checks of a sweep's models that are cheap next to calibrating and scoring them, run before any of
// that: each model's fingerprint (what its results are stored under), its tokenizer (every cell and the
// calibration need it) and its weights' finiteness (TENSOR_NONFINITE, once per checkpoint identity: the
// marker the first graph build would leave, so the build then reads nothing more). A model
// that fails fails its own cells only (failSlots), so one broken checkpoint among several is reported in
// seconds and the others are still scored (in a `--shard` or Slurm task too, whose store then holds
// the failed cells); a sweep of a single model that fails stops as a whole, as it did before.
import path from 'node:path'
import { graphCacheRoot, refuseFloat16Range } from '../engine/graphSession.ts'
import type { Device } from '../ort/ort.ts'
import { formatError, type HarnessErrorData } from '../errors.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { verifiedFinite } from '../onnx/graphStore.ts'
import type { ResultsStore } from '../store/resultsStore.ts'
import { failSlots, modelFailure, type VariantSlot } from './variantSlots.ts'

/** A model refused by checkModels: its planned slots, and whether its fingerprint (hence a store row) exists. */
export interface ModelCheckFailure { name: string; slots: VariantSlot[]; error: HarnessErrorData; fingerprinted: boolean }

/**
 * Checks every model that has one of `slots` to prepare (its fingerprint, its tokenizer, then its
 * weights unless allowNonfinite, and on a GPU device their float16 range) and returns those that failed, logging each. Throws the error when
 * the sweep has a single model: every cell would fail for the same reason, said once.
 */
export function checkModels(slots: readonly VariantSlot[], models: ReadonlyMap<string, Checkpoint>, log: (line: string) => void, device: Device = 'cpu'): ModelCheckFailure[] {
  const failures: ModelCheckFailure[] = []
  for (const [name, ckpt] of models) {
    const own = slots.filter(s => s.spec.model === name && s.planned.status === 'planned')
    if (own.length === 0) continue
    let fingerprinted = false
    try {
      ckpt.fingerprint()
      fingerprinted = true
      ckpt.tokenizer()
      checkFinite(ckpt)
      refuseFloat16Range(ckpt, { device }) // the pool's sessions compute in the device's default precision
    } catch (e) {
      const { data, thrown } = modelFailure(name, e, 'FILE_ACCESS', { phase: 'check' }) // anything not a HarnessError here is a failed read
      if (models.size === 1) throw thrown
      failures.push({ name, slots: own, error: data, fingerprinted })
      log(`model ${name} refused: ${formatError(data)}`)
    }
  }
  return failures
}

/**
 * Fails the cells of each refused model (describeInputs has stored the models with a fingerprint,
 * so their failed variants are stored under it and the report lists them).
 */
export function failRefusedModels(failures: readonly ModelCheckFailure[], store: ResultsStore): void {
  for (const f of failures) failSlots(f.slots, f.error, f.fingerprinted ? store : undefined)
}

/** Every weight read once to refuse NaN/Inf, or nothing when the graph cache's marker says this checkpoint identity passed. */
function checkFinite(ckpt: Checkpoint): void {
  if (ckpt.allowNonfinite) return
  const root = graphCacheRoot()
  if (root !== undefined) verifiedFinite(ckpt, path.join(root, 'graphs'))
  else for (const name of ckpt.tensors.keys()) ckpt.checkFinite(name)
}
