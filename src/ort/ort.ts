// The one module that talks to onnxruntime-node. Everything else passes plain typed arrays.
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import * as ort from 'onnxruntime-node'
import { fail } from '../errors.ts'
import { closest } from '../util/suggest.ts'

// onnxruntime's telemetry writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db and an
// empty /tmp/mat-debug-<pid>.log per process: files the user did not ask for. It reads the variable
// when the first session is created, so setting it here (before any) is enough; a user's own value wins.
process.env.ORT_DISABLE_TELEMETRY ??= '1'

/**
 * The execution provider: 'cpu' (bundled), 'cuda' (onnxruntime's CUDA provider, installed separately),
 * or 'webgpu' (bundled in onnxruntime-node's Linux build, Dawn over Vulkan: needs libvulkan.so.1 and
 * the GPU vendor's Vulkan driver). None falls back to the CPU silently.
 */
export type Device = 'cpu' | 'cuda' | 'webgpu'
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'webgpu']

export interface SessionSettings {
  device: Device
  /** Intra-op threads of this session (workers × threads should not exceed the cores). */
  threads: number
}

export interface GraphBytes {
  model: Uint8Array
  /** In-memory external data by location (onnxruntime copies it into the session). */
  external: Map<string, Uint8Array>
  /**
   * The folder file-backed external data locations are relative to (the model is handed over as bytes,
   * so onnxruntime needs it: session.model_external_initializers_file_folder_path). onnxruntime maps
   * those files rather than copying them, and refuses locations that resolve outside this folder.
   */
  externalFolder?: string
  /**
   * A folder where onnxruntime's optimized form of this graph may be kept (the graph's cache entry).
   * When it holds one for these graph bytes, onnxruntime version and device, the session opens it with graph
   * optimizations off; otherwise the session is created as usual and the optimized graph written there.
   * Used only for graphs whose external data is all file-backed (`external` empty) on the CPU.
   */
  optimizedCacheDir?: string
}

export type Feed =
  | { type: 'int64'; data: BigInt64Array; dims: number[] }
  | { type: 'float32'; data: Float32Array; dims: number[] }

export interface Fetched {
  data: Float32Array | BigInt64Array | Uint8Array
  dims: number[]
}

/** What a session expects of one input: element type and shape (a string is a symbolic dimension, e.g. 'B'). */
export interface InputSpec {
  name: string
  type: string
  /** Empty when the graph does not declare a shape. */
  shape: readonly (number | string)[]
}

export interface Session {
  readonly inputNames: readonly string[]
  readonly inputs: readonly InputSpec[]
  readonly outputNames: readonly string[]
  readonly device: Device
  /** The session was opened from onnxruntime's optimized graph kept in GraphBytes.optimizedCacheDir. */
  readonly fromOptimizedCache?: boolean
  run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, Fetched>>
  release(): Promise<void>
}

export const ORT_VERSION: string = (ort.env.versions as { common?: string }).common ?? 'unknown'

const CPU_INSTEAD = "or use the CPU (--device cpu; in a sweep config, device: 'cpu')"

export function cudaInstallHint(): string {
  return (
    'The CUDA execution provider is not installed: onnxruntime-node ships CPU binaries only. Install it with ' +
    // By its absolute path: the command is copied from whatever folder the harness was run in.
    `\`ONNXRUNTIME_NODE_INSTALL=cuda12 node ${path.join(ortPackageDir(), 'script', 'install.js')}\` ` +
    `(downloads from api.nuget.org; needs the CUDA 12 and cuDNN 9 runtime libraries), ${CPU_INSTEAD}.`
  )
}

/** The onnxruntime-node package folder the harness loads (its main file is dist/index.js). */
function ortPackageDir(): string {
  return path.join(path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..')
}

/** The folder of onnxruntime-node's native libraries (libonnxruntime.so.1, its providers). */
function ortBinDir(): string {
  return path.join(ortPackageDir(), 'bin', 'napi-v6', process.platform, process.arch)
}

/** Whether onnxruntime-node's CUDA provider library is installed next to its CPU binaries. */
export function cudaProviderInstalled(): boolean {
  return fs.existsSync(path.join(ortBinDir(), 'libonnxruntime_providers_cuda.so'))
}

/**
 * Why the Vulkan loader libvulkan.so.1 cannot be found where Dawn (onnxruntime's WebGPU backend) looks
 * for it (dlopen's words), or undefined when it can. Dawn is linked into libonnxruntime.so.1, whose
 * RUNPATH is $ORIGIN, so its dlopen also searches that library's folder `ortDir`; a dlopen from Node
 * (no RUNPATH) searches only LD_LIBRARY_PATH, ld.so.cache and the system folders, and alone refused
 * a loader placed beside onnxruntime (glibc dlopen(3): the calling object's DT_RUNPATH).
 */
export function vulkanLoaderMissing(ortDir: string = ortBinDir()): string | undefined {
  try {
    // A library that is not a Node addon loads and then fails to "self-register", which means it is there.
    process.dlopen({ exports: {} }, 'libvulkan.so.1')
    return undefined
  } catch (e) {
    const message = (e as Error).message
    if (!/cannot open shared object file/.test(message) || fs.existsSync(path.join(ortDir, 'libvulkan.so.1'))) return undefined
    return message.split(':').slice(1).join(':').trim()
  }
}

/**
 * Fails with DEVICE_UNAVAILABLE when `device` certainly cannot run here, found without starting it:
 * the CUDA provider library is not installed, or (Linux) the Vulkan loader libvulkan.so.1 that Dawn,
 * onnxruntime's WebGPU backend, opens is not on the library path. Called before any expensive work
 * (graph builds, calibration, variant preparation), and so that the user sees one clear error rather
 * than Dawn's native warning first. A loader that is present does not prove a GPU: that is found
 * when the session is created (createSession's DEVICE_UNAVAILABLE).
 */
export function checkDeviceAvailable(device: Device): void {
  // Never fall back to the CPU silently: a missing CUDA provider is an error with the install command.
  if (device === 'cuda' && !cudaProviderInstalled()) fail('DEVICE_UNAVAILABLE', cudaInstallHint())
  if (device === 'webgpu' && process.platform === 'linux') {
    const missing = vulkanLoaderMissing()
    if (missing !== undefined) fail('DEVICE_UNAVAILABLE', `No WebGPU device: the Vulkan loader libvulkan.so.1, which onnxruntime's WebGPU provider (Dawn over Vulkan) opens, is not installed (${missing}). Install it (Debian/Ubuntu: apt install libvulkan1) with the GPU vendor's Vulkan driver (e.g. the NVIDIA driver's Vulkan ICD), ${CPU_INSTEAD}.`)
  }
}

export async function createSession(graph: GraphBytes, settings: SessionSettings): Promise<Session> {
  checkDeviceAvailable(settings.device)
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [{ name: settings.device }],
    intraOpNumThreads: settings.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // 'all' adds only the layout level (NCHWc/NHWC rewrites of Conv-family ops; none in these graphs): the
    // optimized scoring graphs were byte-identical at both levels (Qwen3-30B-A3B shape at hidden 64,
    // OLMoE-1B-7B at full width), creation ~3% faster (48 x 128 experts: 21.7 vs 22.5 CPU s), and an
    // 'extended' optimized graph holds nothing specific to this CPU, so optimizedCacheDir may be shared.
    graphOptimizationLevel: 'extended',
    enableCpuMemArena: true,
    logSeverityLevel: 3,
    externalData: [...graph.external.entries()].map(([path, data]) => ({ path, data })),
    ...(graph.externalFolder ? { extra: { session: { model_external_initializers_file_folder_path: graph.externalFolder } } } : {}),
  }
  // Developer aid: MOE_HARNESS_ORT_OPTIMIZED_MODEL=file writes the graph as onnxruntime optimized it
  // (tests check that no weight was folded into a float32 copy).
  if (process.env.MOE_HARNESS_ORT_OPTIMIZED_MODEL) options.optimizedModelFilePath = process.env.MOE_HARNESS_ORT_OPTIMIZED_MODEL
  // Developer aid: MOE_HARNESS_ORT_PROFILE=prefix writes onnxruntime's per-node timing JSON.
  if (process.env.MOE_HARNESS_ORT_PROFILE) {
    options.enableProfiling = true
    options.profileFilePrefix = process.env.MOE_HARNESS_ORT_PROFILE
  }
  const optimized = optimizedCacheFile(graph, settings.device)
  let session: ort.InferenceSession | undefined
  let fromOptimizedCache = false
  let keptBytes = optimized && fs.existsSync(optimized) ? fs.statSync(optimized).size : undefined
  if (optimized && keptBytes) {
    // Graph optimizations are about half of creation on the scoring graph (Qwen3-30B-A3B shape at hidden
    // 64, CPU seconds: 12 layers 5.2 -> 2.4, 48 layers 22.5 -> 11.8 with them off). Half-precision weights
    // reach their ops through a run-time Reshape, so the optimized graph still maps them where the graph
    // does. It has the same nodes: outputs bit-identical, same speed (OLMoE width, 2048 tokens: 9.06 vs 8.96 CPU s).
    try {
      session = await ort.InferenceSession.create(fs.readFileSync(optimized), { ...options, graphOptimizationLevel: 'disabled' })
      fromOptimizedCache = true
    } catch {
      fs.rmSync(optimized, { force: true }) // damaged or foreign: rebuilt below
      keptBytes = undefined
    }
  }
  try {
    if (!session && optimized && keptBytes === undefined) session = await createKeepingOptimized(graph.model, options, optimized)
    session ??= await ort.InferenceSession.create(graph.model, options)
  } catch (e) {
    const message = (e as Error).message ?? String(e)
    if (settings.device === 'cuda') fail('DEVICE_UNAVAILABLE', `${cudaInstallHint()} (onnxruntime said: ${message.split('\n')[0]})`)
    if (settings.device === 'webgpu' && /adapter|vulkan|webgpu/i.test(message)) {
      fail('DEVICE_UNAVAILABLE', `No WebGPU device: onnxruntime's WebGPU provider (Dawn over Vulkan) found no GPU adapter. It needs libvulkan.so.1 and the GPU vendor's Vulkan driver (e.g. the NVIDIA driver's Vulkan ICD); check with \`vulkaninfo --summary\`, ${CPU_INSTEAD}. (onnxruntime said: ${message.split('\n')[0]})`)
    }
    fail('SESSION_FAILED', `onnxruntime could not create the session: ${message}`)
  }
  const inputs: InputSpec[] = session.inputMetadata.map(m => (m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : { name: m.name, type: 'non-tensor', shape: [] }))
  return {
    inputNames: session.inputNames,
    inputs,
    outputNames: session.outputNames,
    device: settings.device,
    fromOptimizedCache,
    async run(feeds, outputs) {
      checkFeeds(inputs, feeds)
      const tensors: Record<string, ort.Tensor> = {}
      for (const [name, f] of Object.entries(feeds)) tensors[name] = new ort.Tensor(f.type, f.data, f.dims)
      let result: ort.InferenceSession.ReturnType
      try {
        result = outputs ? await session.run(tensors, [...outputs]) : await session.run(tensors)
      } catch (e) {
        fail('SESSION_FAILED', describeRunFailure((e as Error)?.message ?? String(e), feeds), e)
      }
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

/** Where createSession keeps onnxruntime's optimized form of `graph`, or undefined where it keeps none. */
function optimizedCacheFile(graph: GraphBytes, device: Device): string | undefined {
  // In-memory external data would be written into the optimized graph; the dev aid wants its own file.
  if (!graph.optimizedCacheDir || graph.external.size > 0 || device !== 'cpu' || process.env.MOE_HARNESS_ORT_OPTIMIZED_MODEL) return undefined
  // Named by the graph's own hash: a graph rebuilt in the same folder never opens a stale optimized form.
  const graphHash = createHash('sha256').update(graph.model).digest('hex').slice(0, 16)
  return path.join(graph.optimizedCacheDir, `optimized-ort${ORT_VERSION}-${device}-${graphHash}.onnx`)
}

/**
 * Creates the session and has onnxruntime write its optimized graph to `file` (written under a
 * private name and renamed in, so concurrent workers never read half a file). The optimized graph
 * references the same external data, so it is small, unless onnxruntime folded weights into new
 * tensors (float32 checkpoints: Transpose(lm_head) becomes a float32 copy): such a file would be a
 * second copy of those weights on disk, so an empty file takes its place and says "keep none".
 * A cache that cannot be written is skipped.
 */
async function createKeepingOptimized(model: Uint8Array, options: ort.InferenceSession.SessionOptions, file: string): Promise<ort.InferenceSession> {
  const temp = `${file}.${process.pid}-${Math.random().toString(36).slice(2)}.tmp`
  let session: ort.InferenceSession
  try {
    session = await ort.InferenceSession.create(model, { ...options, optimizedModelFilePath: temp })
  } catch {
    fs.rmSync(temp, { force: true })
    return ort.InferenceSession.create(model, options) // its own error, if any, is the one to report
  }
  try {
    if (fs.statSync(temp).size > 1.5 * model.byteLength + 65536) fs.writeFileSync(temp, '') // measured: 1.1x without folded weights
    fs.renameSync(temp, file)
  } catch {
    fs.rmSync(temp, { force: true })
  }
  return session
}

const describeFeed = (name: string, f: Feed) => `${name} ${f.type}[${f.dims.join(', ')}]`
const describeFeeds = (feeds: Record<string, Feed>) => Object.entries(feeds).map(([n, f]) => describeFeed(n, f)).join(', ')
const describeInput = (i: InputSpec) => `${i.name} ${i.type}[${i.shape.join(', ')}]`

/**
 * Checks feeds against what the session declares, before onnxruntime sees them: every input fed and
 * nothing else, element types, ranks, fixed dimensions, one size per symbolic dimension across inputs
 * (input_ids and position_ids share 'B' and 'T'), and data lengths. Throws FEED_INVALID naming the
 * input, its shape and what the session expects; onnxruntime's own message would name neither.
 */
export function checkFeeds(inputs: readonly InputSpec[], feeds: Record<string, Feed>): void {
  const expected = `the session expects ${inputs.map(describeInput).join(', ')}`
  const names = inputs.map(i => i.name)
  for (const name of Object.keys(feeds)) {
    if (!names.includes(name)) {
      const near = closest(name, names)
      fail('FEED_INVALID', `Feed '${name}' is not an input of this graph${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}; ${expected}.`)
    }
  }
  const symbols = new Map<string, { size: number; input: string }>()
  for (const input of inputs) {
    const f = feeds[input.name]
    if (!f) fail('FEED_INVALID', `Input '${input.name}' was not fed (fed: ${describeFeeds(feeds) || 'nothing'}); ${expected}.`)
    if (input.type !== f.type) fail('FEED_INVALID', `Input '${input.name}' must be ${input.type}, got ${describeFeed(input.name, f)}; ${expected}.`)
    const numel = f.dims.reduce((a, b) => a * b, 1)
    if (f.dims.some(d => !Number.isInteger(d) || d < 0) || f.data.length !== numel) {
      fail('FEED_INVALID', `Input '${input.name}': ${f.data.length} values do not fill dims [${f.dims.join(', ')}] (${numel} values).`)
    }
    if (input.shape.length === 0) continue
    if (f.dims.length !== input.shape.length) fail('FEED_INVALID', `Input '${input.name}' must have rank ${input.shape.length} [${input.shape.join(', ')}], got ${describeFeed(input.name, f)}; ${expected}.`)
    input.shape.forEach((dim, axis) => {
      const size = f.dims[axis]!
      if (typeof dim === 'number') {
        if (dim > 0 && dim !== size) fail('FEED_INVALID', `Input '${input.name}' must have ${dim} along axis ${axis}, got ${describeFeed(input.name, f)}; ${expected}.`)
        return
      }
      if (dim === '') return // an unnamed free dimension
      const seen = symbols.get(dim)
      if (seen && seen.size !== size) {
        fail('FEED_INVALID', `Dimension '${dim}' is ${seen.size} in '${seen.input}' but ${size} in '${input.name}'; they must agree. Fed: ${describeFeeds(feeds)}.`)
      }
      if (!seen) symbols.set(dim, { size, input: input.name })
    })
  }
}

/**
 * onnxruntime's run error ("Non-zero status code returned while running Gather node. Name:'n_Gather_6'
 * Status Message: ...") restated with the failing node and the shapes that were fed.
 */
export function describeRunFailure(message: string, feeds: Record<string, Feed>): string {
  const m = /running (\S+) node\. Name:'([^']*)' Status Message: ([\s\S]*)/.exec(message)
  const what = m ? `node '${m[2]}' (${m[1]}) failed: ${m[3]!.trim()}` : `run failed: ${message.trim()}`
  return `onnxruntime ${what}. Feeds: ${describeFeeds(feeds)}. Check the inputs against the graph (ids within the vocabulary, positions within the model's range); if they are valid this is a graph-building bug.`
}
