// How the benchmarks start the PyTorch eager peer (bench/peers/torch_moe.py): Debian's python3-torch
// pointed at OpenBLAS for this process only, with the same thread count as the engine it is compared to.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const TORCH_PEER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'torch_moe.py')

/** The folder holding OpenBLAS's libblas.so.3 (`given` first), or null: the reference BLAS would make a meaningless peer. */
export function findOpenBlas(given: string): string | null {
  const candidates = [given, '/usr/lib/x86_64-linux-gnu/openblas-pthread', '/opt/moe-bench-openblas/usr/lib/x86_64-linux-gnu/openblas-pthread'].filter(Boolean)
  return candidates.find(d => fs.existsSync(path.join(d, 'libblas.so.3'))) ?? null
}

/** The peer's environment: `threads` for torch and OpenBLAS, OpenBLAS first on the library path. */
export function torchPeerEnv(openblas: string | null, threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) }
  // environment.md: these two are unset together, in the peer's environment only.
  delete env.OPENBLAS_CORETYPE
  delete env.OPENBLAS_L2_SIZE
  if (openblas) env.LD_LIBRARY_PATH = [openblas, env.LD_LIBRARY_PATH].filter(Boolean).join(':')
  return env
}
