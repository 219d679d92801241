import type { Command } from 'commander'
import { Option } from 'commander'
import { fail } from '../../errors.ts'
import { openCheckpoint } from '../../model/checkpoint.ts'
import { formatBytes } from '../../util/bytes.ts'
import { checkOutputDir, type OutputContext } from '../../util/outputPaths.ts'
import { HARNESS_VERSION } from '../../version.ts'
import { harnessHome } from '../../defaults.ts'
import fs from 'node:fs'
import path from 'node:path'
import { exportVariant, fp8Dequantization } from '../../variants/export.ts'
import { checkpointOptions, addDeviceOptions, threadCount, type EngineFlags } from '../engineOptions.ts'
import { addMethodOptions, planFromFlags, prepareFromPlan, type MethodFlags } from '../methodOptions.ts'

interface TransformFlags extends EngineFlags, MethodFlags {
  model: string
  out: string
  format: 'auto' | 'hf' | 'harness'
  json?: boolean
}

export function registerTransform(program: Command): void {
  const cmd = program
    .command('transform')
    .description('Apply a method and write the transformed model: a standard HuggingFace checkpoint when possible, the harness variant format otherwise.')
    .requiredOption('--model <dir>', 'HuggingFace-format checkpoint folder')
    .requiredOption('--out <dir>', 'output folder: created, or replaced atomically when moe-harness wrote it')
    .addOption(new Option('--format <format>', 'hf: fail unless a stock HF loader computes the same model; harness: always add moe_harness_variant.json').choices(['auto', 'hf', 'harness']).default('auto'))
    .option('--json', 'print a JSON summary as the last line')
  addMethodOptions(addDeviceOptions(cmd))
  cmd.addHelpText('after', `
Removal with the same count in every layer, merges and weight edits give a plain HF checkpoint
(pruned experts removed, num_local_experts updated, router rows sliced). Novices, neuron top-k,
dynamic skipping or uneven per-layer counts add moe_harness_variant.json, which every moe-harness
command applies when it opens the folder.
FP8 checkpoints (DeepSeek-V3) are written dequantized as F32 (exact; not FP8, ~4x the bytes per FP8
weight, quantization_config dropped); the output and --json say so.
Example:
  moe-harness transform --model models/tiny-moe --method reap --ratio 0.25 --out /tmp/tiny-reap25
`)
  cmd.action(async (flags: TransformFlags) => {
    if (!flags.method) fail('INVALID_ARGUMENT', 'transform needs --method (see `moe-harness methods`).')
    const ckpt = openCheckpoint(flags.model, checkpointOptions(flags))
    const output: OutputContext = { source: '--out', models: [ckpt.dir] }
    // Refuse a bad --out before calibrating and applying the method.
    checkOutputDir(flags.out, 'transform', output)
    refuseHarnessHome(flags.out)
    const plan = await planFromFlags(flags, ckpt)
    const variant = (await prepareFromPlan(ckpt, plan, flags, { device: flags.device, threads: threadCount(flags) }))!
    const provenance = {
      harness: HARNESS_VERSION, source: ckpt.dir, sourceFingerprint: ckpt.fingerprint(), method: variant.method, params: variant.params,
      variantId: variant.variantId, achievedRatio: variant.report.achievedRatio, calibration: variant.calibration, layers: variant.accounting.layers,
    }
    const fp8 = fp8Dequantization(ckpt)
    if (fp8) {
      // Said before writing: at DeepSeek-V3 scale the F32 output is terabytes.
      process.stderr.write(`note: ${flags.model} stores ${fp8.tensors} weights as FP8; they are written dequantized as F32 (exact; BF16 would round fp8 × scale), so the output is not FP8 (quantization_config dropped) and takes up to ${formatBytes(fp8.writtenBytesUpperBound)} (the source: ${formatBytes(fp8.sourceBytes)}).\n`)
    }
    const format = exportVariant(ckpt, variant.edits, flags.out, provenance, flags.format, output)
    const outputBytes = safetensorsBytes(flags.out)
    const dtype = fp8 ? { fp8Tensors: fp8.tensors, writtenAs: fp8.writtenAs, quantizationConfigDropped: true, sourceBytes: fp8.sourceBytes, outputBytes } : null
    const summary = { out: flags.out, format, method: variant.method, params: variant.params, achievedRatio: variant.report.achievedRatio, totalParams: variant.accounting.totalParams, memoryBytes: variant.accounting.memoryBytes, dequantized: dtype, warnings: variant.warnings }
    process.stdout.write(`wrote ${format === 'hf' ? 'a HuggingFace checkpoint' : 'a harness-format variant'} to ${flags.out} (${variant.method}, achieved ratio ${variant.report.achievedRatio.toFixed(4)})\n`)
    if (fp8) process.stdout.write(`dtype: ${fp8.tensors} FP8 weights written as F32 (dequantized exactly; not an FP8 checkpoint, quantization_config dropped): ${formatBytes(outputBytes)} of weights vs ${formatBytes(fp8.sourceBytes)} in the source\n`)
    if (flags.json) process.stdout.write(JSON.stringify(summary) + '\n')
  })
}

/** Bytes of the safetensors files in a folder. */
function safetensorsBytes(dir: string): number {
  return fs.readdirSync(dir).filter(f => f.endsWith('.safetensors')).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0)
}

/**
 * The method writes calibration statistics and graphs into the harness home while it runs; an --out
 * that is the home, or holds it, would then look like a folder of files moe-harness did not write and
 * be refused only after the work (or, were it replaced, lose the caches).
 */
function refuseHarnessHome(out: string): void {
  const home = harnessHome()
  const abs = path.resolve(out)
  const rel = path.relative(abs, home)
  if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
    fail('OUTPUT_UNSAFE', `--out ${out} ${rel === '' ? 'is' : 'contains'} the harness home ${home} ($MOE_HARNESS_HOME, else ./.harness), where calibration statistics and graphs are written while the method runs. Nothing was written; choose a folder outside it (e.g. ${path.join(path.dirname(abs), 'transformed')}).`)
  }
}
