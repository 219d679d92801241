// Variants for cache-evict-kill: expert 0's gate of layer 0 scaled by `factor` (one graph cache entry
// with its own derived.bin per factor).
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import type { Checkpoint } from '../../src/model/checkpoint.ts'

export function scaledExpert(ckpt: Checkpoint, factor: number): VariantEdits {
  const edits = emptyEdits()
  const name = ckpt.names.layers[0]!.experts![0]!.gate
  edits.overrides[name] = ckpt.read(name).map(v => v * factor)
  return edits
}
