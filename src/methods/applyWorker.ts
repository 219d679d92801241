// The method worker (started by applyInWorker.ts through applyWorker.mjs; kept for the next method once
// idle): loads the method by its name from methods/, opens the checkpoint from its folder and runs
// applyMethod / startMethod exactly as the main thread would, so a method that computes for minutes
// leaves the main thread's event loop free (lease heartbeats, progress, Ctrl-C). Requests and replies
// are the types below; edits come back with their float32 buffers moved (transferred, in the last
// reply) and stored overrides as file references.
import { parentPort } from 'node:worker_threads'
import { HarnessError, type HarnessErrorData } from '../errors.ts'
import type { StatsData } from '../calibration/stats.ts'
import { useSpillFolder } from '../edits/overrideSpill.ts'
import { isStoredOverride, type OverrideTensor } from '../edits/overrideTensor.ts'
import type { LayerHooks, VariantEdits } from '../edits/variantEdits.ts'
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.ts'
import { applyMethod, startMethod, type AppliedMethod, type MethodRun } from './applyMethod.ts'
import type { MethodDefinition } from './defineMethod.ts'
import { loadMethod, methodFileHash, type ParamValues } from './registry.ts'

/** What a method run needs (the `start` request): the worker loads the method and opens the checkpoint itself. */
export interface ApplyStart {
  method: string
  /** methodFileHash(method) in the main thread: the code the variant id names. */
  codeHash: string
  params: ParamValues
  checkpoint: { dir: string; allowNonfinite: boolean }
  seedKey: string
  spillBytes: number
  /** The main thread's spill folder (overrideSpill.ts spillFolderPath): it removes it at exit. */
  spillFolder: string
  /** 'one-pass': one `apply` request (applyMethod); 'layers': `layer` requests, then `finish` (startMethod). */
  mode: 'one-pass' | 'layers'
  /** 'layers' only: the one-pass statistics of the unpruned model (ctx.unpruned). */
  unpruned?: StatsData
  /** The main thread's environment now: a thread keeps the one it started with, and is reused. */
  env: Record<string, string | undefined>
}

/** One at a time; a `start` begins a new run (any earlier one is dropped), `apply` or `finish` ends it. */
export type ApplyRequest =
  | ({ kind: 'start' } & ApplyStart)
  | { kind: 'apply'; stats?: StatsData }
  /** `stats`: layer `index`'s entries (and the info); the worker keeps the earlier layers'. */
  | { kind: 'layer'; index: number; stats: StatsData }
  | { kind: 'finish' }

/** What changed in the edits since the previous reply: every layer's hooks, and the overrides set or stored since. */
export interface EditsDelta {
  layers: Record<number, LayerHooks>
  overrides: Record<string, OverrideTensor>
}

export type ApplyReply =
  /** Posted once, when this thread's modules are instantiated (terminating it before then aborts the process, as in pool.ts). */
  | { kind: 'loaded' }
  | { kind: 'ready' }
  /** This thread loaded other code for the method than the main thread did: the main thread applies it (its id names its code). */
  | { kind: 'stale' }
  | { kind: 'layer'; edits: EditsDelta }
  | { kind: 'done'; applied: AppliedMethod }
  | { kind: 'error'; error: HarnessErrorData }
  /** Anything but a HarnessError (a bug in the harness): rebuilt with its stack, as the main thread would have thrown it. */
  | { kind: 'crash'; name: string; message: string; stack?: string }

const port = parentPort!
const post = (reply: ApplyReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer)

function postError(e: unknown): void {
  if (e instanceof HarnessError) post({ kind: 'error', error: e.toData() })
  else if (e instanceof Error) post({ kind: 'crash', name: e.name, message: e.message, stack: e.stack })
  else post({ kind: 'crash', name: 'Error', message: String(e) })
}

/** The buffers of in-memory overrides that can move instead of being copied (whole, unshared buffers, each once). */
function transferables(edits: VariantEdits): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>()
  for (const t of Object.values(edits.overrides)) {
    if (!isStoredOverride(t) && t.buffer instanceof ArrayBuffer && t.byteOffset === 0 && t.byteLength === t.buffer.byteLength) out.add(t.buffer)
  }
  return [...out]
}

interface Current {
  start: ApplyStart
  method: MethodDefinition
  ckpt: Checkpoint
  run?: MethodRun
  /** 'layers': the statistics of the layers so far, as the sequential engine's own object holds them. */
  stats: StatsData
  /** 'layers': the override objects already sent (a tensor set again, or stored, is a new object). */
  sent: Map<string, OverrideTensor>
}
let current: Current | undefined

function done(applied: AppliedMethod): void {
  current = undefined
  try {
    post({ kind: 'done', applied }, transferables(applied.edits))
  } catch (e) {
    if (!(e instanceof Error && e.name === 'DataCloneError')) throw e
    // A report holding what cannot cross threads (a function among its notes): the main thread stores
    // it as JSON (report_json), which drops such values, so its JSON form is the same report.
    post({ kind: 'done', applied: { ...applied, report: JSON.parse(JSON.stringify(applied.report)) } }, transferables(applied.edits))
  }
}

async function handle(req: ApplyRequest): Promise<void> {
  if (req.kind === 'start') {
    current = undefined
    const { kind: _, ...start } = req
    for (const key of Object.keys(process.env)) if (!(key in start.env)) delete process.env[key]
    Object.assign(process.env, start.env)
    // Checked before the import: this thread imports the file once, now or for an earlier run.
    if (methodFileHash(start.method) !== start.codeHash) return post({ kind: 'stale' })
    const method = await loadMethod(start.method)
    useSpillFolder(start.spillFolder)
    const ckpt = openCheckpoint(start.checkpoint.dir, { allowNonfinite: start.checkpoint.allowNonfinite, warn: () => {} }) // the main thread warned
    const run = start.mode === 'layers' ? startMethod(method, start.params, ckpt, start.seedKey, start.unpruned, { spillBytes: start.spillBytes }) : undefined
    current = { start, method, ckpt, run, stats: { info: NO_INFO }, sent: new Map() }
    return post({ kind: 'ready' })
  }
  const c = current ?? internal(`'${req.kind}' without a run started`)
  if (req.kind === 'apply') return done(await applyMethod(c.method, c.start.params, c.ckpt, req.stats, c.start.seedKey, undefined, { spillBytes: c.start.spillBytes }))
  const run = c.run ?? internal(`'${req.kind}' needs a run started in 'layers' mode`)
  if (req.kind === 'finish') return done(run.finish())
  c.stats.info = req.stats.info
  for (const [key, table] of Object.entries(req.stats)) if (key !== 'info' && table) Object.assign(((c.stats as unknown as Record<string, object>)[key] ??= {}), table)
  await run.layer(req.index, c.stats)
  // Copied, not moved: later layers may read these tensors here (weights.get).
  const overrides: Record<string, OverrideTensor> = {}
  for (const [name, t] of Object.entries(run.edits.overrides)) if (c.sent.get(name) !== t) c.sent.set(name, (overrides[name] = t))
  post({ kind: 'layer', edits: { layers: run.edits.layers, overrides } })
}

/** A request out of protocol: a bug in applyInWorker.ts, reported as an internal error with its stack. */
function internal(what: string): never {
  throw new Error(`method worker: ${what}`)
}

const NO_INFO: StatsData['info'] = { key: '', needs: [], sequences: 0, length: 0, tokens: 0, source: 'none', seconds: 0 }

// The main thread sends the next request only after this one's reply.
// A failed run is over: its edits are not kept for the next one.
port.on('message', (req: ApplyRequest) => { handle(req).catch(e => { current = undefined; postError(e) }) })
post({ kind: 'loaded' })
