// The one module that talks to onnxruntime-node. Everything else passes plain typed arrays.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import * as ort from 'onnxruntime-node'
import { fail } from '../errors.ts'

export type Device = 'cpu' | 'cuda'

export interface SessionSettings {
  device: Device
  /** Intra-op threads of this session (workers × threads should not exceed the cores). */
  threads: number
}

export interface GraphBytes {
  model: Uint8Array
  external: Map<string, Uint8Array>
}

export type Feed =
  | { type: 'int64'; data: BigInt64Array; dims: number[] }
  | { type: 'float32'; data: Float32Array; dims: number[] }

export interface Fetched {
  data: Float32Array | BigInt64Array | Uint8Array
  dims: number[]
}

export interface Session {
  readonly inputNames: readonly string[]
  readonly outputNames: readonly string[]
  readonly device: Device
  run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, Fetched>>
  release(): Promise<void>
}

export const ORT_VERSION: string = (ort.env.versions as { common?: string }).common ?? 'unknown'

export function cudaInstallHint(): string {
  return (
    'The CUDA execution provider is not installed: onnxruntime-node ships CPU binaries only. Install it with ' +
    '`ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js` ' +
    '(downloads from api.nuget.org; needs the CUDA 12 and cuDNN 9 runtime libraries), or run with --device cpu.'
  )
}

/** Whether onnxruntime-node's CUDA provider library is installed next to its CPU binaries. */
export function cudaProviderInstalled(): boolean {
  const main = createRequire(import.meta.url).resolve('onnxruntime-node')
  const binDir = path.join(path.dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch)
  return fs.existsSync(path.join(binDir, 'libonnxruntime_providers_cuda.so'))
}

export async function createSession(graph: GraphBytes, settings: SessionSettings): Promise<Session> {
  // Never fall back to the CPU silently: a missing CUDA provider is an error with the install command.
  if (settings.device === 'cuda' && !cudaProviderInstalled()) fail('DEVICE_UNAVAILABLE', cudaInstallHint())
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [settings.device === 'cuda' ? { name: 'cuda' } : { name: 'cpu' }],
    intraOpNumThreads: settings.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableCpuMemArena: true,
    logSeverityLevel: 3,
    externalData: [...graph.external.entries()].map(([path, data]) => ({ path, data })),
  }
  // Developer aid: MOE_HARNESS_ORT_PROFILE=prefix writes onnxruntime's per-node timing JSON.
  if (process.env.MOE_HARNESS_ORT_PROFILE) {
    options.enableProfiling = true
    options.profileFilePrefix = process.env.MOE_HARNESS_ORT_PROFILE
  }
  let session: ort.InferenceSession
  try {
    session = await ort.InferenceSession.create(graph.model, options)
  } catch (e) {
    const message = (e as Error).message ?? String(e)
    if (settings.device === 'cuda') fail('DEVICE_UNAVAILABLE', `${cudaInstallHint()} (onnxruntime said: ${message.split('\n')[0]})`)
    fail('SESSION_FAILED', `onnxruntime could not create the session: ${message}`)
  }
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    device: settings.device,
    async run(feeds, outputs) {
      const tensors: Record<string, ort.Tensor> = {}
      for (const [name, f] of Object.entries(feeds)) tensors[name] = new ort.Tensor(f.type, f.data, f.dims)
      const result = outputs ? await session.run(tensors, [...outputs]) : await session.run(tensors)
      const out: Record<string, Fetched> = {}
      for (const [name, t] of Object.entries(result)) {
        out[name] = { data: t.data as Fetched['data'], dims: [...t.dims] }
        t.dispose()
      }
      return out
    },
    async release() {
      await session.release()
    },
  }
}
