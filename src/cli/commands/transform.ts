import type { Command } from 'commander'
import { Option } from 'commander'
import { fail } from '../../errors.ts'
import { openCheckpoint } from '../../model/checkpoint.ts'
import { checkOutputDir, type OutputContext } from '../../util/outputPaths.ts'
import { HARNESS_VERSION } from '../../version.ts'
import { exportVariant } from '../../variants/export.ts'
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
Example:
  moe-harness transform --model models/tiny-moe --method reap --ratio 0.25 --out /tmp/tiny-reap25
`)
  cmd.action(async (flags: TransformFlags) => {
    if (!flags.method) fail('INVALID_ARGUMENT', 'transform needs --method (see `moe-harness methods`).')
    const ckpt = openCheckpoint(flags.model, checkpointOptions(flags))
    const output: OutputContext = { source: '--out', models: [ckpt.dir] }
    // Refuse a bad --out before calibrating and applying the method.
    checkOutputDir(flags.out, 'transform', output)
    const plan = await planFromFlags(flags, ckpt)
    const variant = (await prepareFromPlan(ckpt, plan, flags, { device: flags.device, threads: threadCount(flags) }))!
    const provenance = {
      harness: HARNESS_VERSION, source: ckpt.dir, sourceFingerprint: ckpt.fingerprint(), method: variant.method, params: variant.params,
      variantId: variant.variantId, achievedRatio: variant.report.achievedRatio, calibration: variant.calibration, layers: variant.accounting.layers,
    }
    const format = exportVariant(ckpt, variant.edits, flags.out, provenance, flags.format, output)
    const summary = { out: flags.out, format, method: variant.method, params: variant.params, achievedRatio: variant.report.achievedRatio, totalParams: variant.accounting.totalParams, memoryBytes: variant.accounting.memoryBytes }
    process.stdout.write(`wrote ${format === 'hf' ? 'a HuggingFace checkpoint' : 'a harness-format variant'} to ${flags.out} (${variant.method}, achieved ratio ${variant.report.achievedRatio.toFixed(4)})\n`)
    if (flags.json) process.stdout.write(JSON.stringify(summary) + '\n')
  })
}
