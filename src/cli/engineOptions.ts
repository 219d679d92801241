// Options shared by every command that runs the engine: device, threads and the direct hook flags.
import { Option, type Command } from 'commander'
import { defaultThreads } from '../defaults.ts'
import { fail } from '../errors.ts'
import { emptyEdits, parseExpertMask, type VariantEdits } from '../edits/variantEdits.ts'
import type { CheckpointOptions } from '../model/checkpoint.ts'
import type { ModelSpec } from '../model/modelSpec.ts'
import { checkDeviceAvailable, DEVICES, type Device } from '../ort/ort.ts'
import { PRECISIONS, type ComputePrecision } from '../onnx/precision.ts'
import { resolvePrecision, type GraphSessionSettings } from '../engine/graphSession.ts'

export interface EngineFlags {
  device: Device
  threads?: string
  precision?: ComputePrecision
  maskExperts?: string
  neuronTopk?: string
  allowNonfinite?: boolean
}

export function addDeviceOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--device <device>', 'execution provider').choices([...DEVICES]).default('cpu'))
    .option('--threads <n>', 'intra-op threads (default: all cores)')
    .option('--allow-nonfinite', 'score a checkpoint whose weights hold NaN/Inf (refused by default: every score would be NaN)')
}

/** --precision, for the commands that score (calibration follows the device's default). */
export function addPrecisionOption(cmd: Command): Command {
  return cmd.addOption(new Option('--precision <dtype>', 'dtype the graph computes in; float32 kept for norms, router, softmax and log-softmax as transformers does (default: float16 on cuda/webgpu, float32 on cpu; bfloat16 needs cuda)').choices([...PRECISIONS]))
}

/** openCheckpoint options from the engine flags. */
export function checkpointOptions(flags: EngineFlags): CheckpointOptions {
  return { allowNonfinite: flags.allowNonfinite === true }
}

export function addHookOptions(cmd: Command): Command {
  return cmd
    .option('--mask-experts <spec>', 'disable experts before top-k, e.g. "0:1,5;3:2" (layer:experts; survivors renormalise as the family does)')
    .option('--neuron-topk <rho>', 'keep the ceil(rho*F) neurons with largest |act(W_gate x)| per token in every routed expert')
}

/** The session settings of the engine flags: device, threads and the compute precision (default per device). */
export function engineSettings(flags: EngineFlags): Pick<GraphSessionSettings, 'device' | 'threads' | 'precision'> {
  // Checked here, before any calibration or method runs: bfloat16 off cuda fails at once.
  if (flags.precision) resolvePrecision(flags.device, flags.precision)
  checkDeviceAvailable(flags.device)
  return { device: flags.device, threads: threadCount(flags), ...(flags.precision ? { precision: flags.precision } : {}) }
}

export function threadCount(flags: EngineFlags): number {
  if (flags.threads === undefined) return defaultThreads()
  const n = Number(flags.threads)
  if (!Number.isInteger(n) || n < 1) fail('INVALID_ARGUMENT', `--threads must be a positive integer, got '${flags.threads}'.`)
  return n
}

/** Turns --mask-experts / --neuron-topk into variant edits for every MoE layer. */
export function editsFromFlags(flags: EngineFlags, spec: ModelSpec): VariantEdits {
  const edits = emptyEdits()
  if (flags.maskExperts) {
    for (const [layer, experts] of Object.entries(parseExpertMask(flags.maskExperts))) {
      edits.layers[Number(layer)] = { ...edits.layers[Number(layer)], disabled: experts }
    }
  }
  if (flags.neuronTopk !== undefined) {
    const rho = Number(flags.neuronTopk)
    if (!(rho > 0 && rho <= 1)) fail('INVALID_ARGUMENT', `--neuron-topk must be a keep fraction in (0, 1], got '${flags.neuronTopk}'.`)
    for (const layer of spec.layers) {
      if (layer.kind === 'moe') edits.layers[layer.index] = { ...edits.layers[layer.index], neuronKeep: rho }
    }
  }
  return edits
}
