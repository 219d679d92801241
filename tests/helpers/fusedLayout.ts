// Re-packs a per-expert (transformers v4 / Hub) checkpoint into the fused expert layout transformers
// v5 writes: model.layers.L.mlp.experts.gate_up_proj [E, 2F, d] (each expert's gate rows, then its
// up rows) and mlp.experts.down_proj [E, d, F]; Mixtral's block_sparse_moe.gate becomes mlp.gate
// (transformers conversion_mapping.py). Every other file is copied unchanged.
import fs from 'node:fs'
import path from 'node:path'
import { readTensors, writeTensors, type RawTensor } from './rawSafetensors.ts'

export function repackFused(srcDir: string, dstDir: string): void {
  fs.mkdirSync(dstDir, { recursive: true })
  for (const f of fs.readdirSync(srcDir)) if (f !== 'model.safetensors') fs.copyFileSync(path.join(srcDir, f), path.join(dstDir, f))
  const tensors = readTensors(path.join(srcDir, 'model.safetensors'))
  const out = new Map<string, RawTensor>()
  const perExpert = /^model\.layers\.(\d+)\.(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(w1|w3|w2|gate_proj|up_proj|down_proj)\.weight$/
  const layers = new Map<number, Map<number, Record<string, RawTensor>>>()
  for (const [name, t] of tensors) {
    const m = perExpert.exec(name)
    if (!m) {
      out.set(name.replace(/\.block_sparse_moe\.gate\./, '.mlp.gate.'), t)
      continue
    }
    const [, L, e, which] = m
    const role = ({ w1: 'gate', w3: 'up', w2: 'down', gate_proj: 'gate', up_proj: 'up', down_proj: 'down' } as const)[which as 'w1']
    if (!layers.has(Number(L))) layers.set(Number(L), new Map())
    const experts = layers.get(Number(L))!
    if (!experts.has(Number(e))) experts.set(Number(e), {})
    experts.get(Number(e))![role] = t
  }
  for (const [L, experts] of layers) {
    const E = experts.size
    const ordered = Array.from({ length: E }, (_, e) => experts.get(e)!)
    const [F, d] = ordered[0].gate.shape
    const dtype = ordered[0].gate.dtype
    out.set(`model.layers.${L}.mlp.experts.gate_up_proj`, { dtype, shape: [E, 2 * F, d], bytes: Buffer.concat(ordered.flatMap(x => [Buffer.from(x.gate.bytes), Buffer.from(x.up.bytes)])) })
    out.set(`model.layers.${L}.mlp.experts.down_proj`, { dtype, shape: [E, d, F], bytes: Buffer.concat(ordered.map(x => Buffer.from(x.down.bytes))) })
  }
  writeTensors(path.join(dstDir, 'model.safetensors'), out)
}
