// Variant edits the engine tests share.
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import type { Checkpoint } from '../../src/model/checkpoint.ts'

/** Halves every expert weight of layer 0: a variant with overrides (what merges and weight pruning write). */
export function halvedLayer0(ckpt: Checkpoint): VariantEdits {
  const edits = emptyEdits()
  for (const e of ckpt.names.layers[0]!.experts ?? []) for (const n of [e.gate, e.up, e.down]) edits.overrides[n] = ckpt.read(n).map(v => v / 2)
  return edits
}
