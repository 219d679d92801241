import type { Command } from 'commander'
import { fail } from '../../errors.ts'
import { mergeEdits, validateEdits, type VariantEdits } from '../../edits/variantEdits.ts'
import { DEFAULTS } from '../../defaults.ts'
import { createLocalScorer } from '../../engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../model/checkpoint.ts'
import { overrideZeros } from '../../edits/overrideTensor.ts'
import { defaultDataDir } from '../../paths.ts'
import type { MetricName, TaskDefinition } from '../../tasks/defineTask.ts'
import { evaluateTask, type TaskEvaluation } from '../../tasks/evaluate.ts'
import { builtInTasks, loadTaskDocs, resolveTasks, selectDocs, subsetKey, type SubsetSpec } from '../../tasks/registry.ts'
import { checkpointOptions, addDeviceOptions, addHookOptions, addPrecisionOption, editsFromFlags, engineSettings, type EngineFlags } from '../engineOptions.ts'
import { refuseFloat16Range, resolvePrecision, weightResidency } from '../../engine/graphSession.ts'
import type { ModelSpec } from '../../model/modelSpec.ts'
import { formatBytes } from '../../util/bytes.ts'
import { availableMemoryBytes, MEMORY_SAFETY, oneSequenceFit, residentWeightBytes, sessionBytes } from '../../pool/memoryFit.ts'
import { longestRequestBound } from '../../tasks/requestBound.ts'
import { addMethodOptions, integerFlag, planFromFlags, prepareFromPlan, type MethodFlags } from '../methodOptions.ts'
import { SESSION_STATUS, stopAllProgress, withProgress, withStatus } from '../progress.ts'
import { formatResultsTable, resultsJson } from '../resultsTable.ts'

interface EvalFlags extends EngineFlags, MethodFlags {
  model: string
  tasks?: string
  limit?: string
  sample?: string
  seed: string
  dataDir?: string
  maxLength?: string
  batchTokens: string
  json?: boolean
}

export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('Zero-shot evaluation with lm-evaluation-harness semantics; prints a results table.')
    .requiredOption('--model <dir>', 'HuggingFace-format checkpoint folder')
    .option('--tasks <names>', 'comma-separated task names (default: the built-in tasks); see `moe-harness tasks`')
    .option('--limit <n>', 'only the first N documents of each task (a fraction in (0, 1) takes that share), as lm-eval --limit')
    .option('--sample <n>', 'a seeded subsample of N documents per task, stratified by the answer; the same for every method')
    .option('--seed <n>', 'seed of --sample', String(DEFAULTS.sampleSeed))
    .option('--data-dir <dir>', 'folder with local copies of the standard datasets (default: $MOE_HARNESS_DATA or ./data)')
    .option('--max-length <n>', "longest model input (default: the model's max_position_embeddings, as lm-eval)")
    .option('--batch-tokens <n>', 'padded tokens per batch; results do not depend on it', String(DEFAULTS.batchTokens))
    .option('--json', 'print one JSON object with all results as the last line')
  addMethodOptions(addHookOptions(addPrecisionOption(addDeviceOptions(cmd))))
  cmd.addHelpText('after', `
Examples:
  moe-harness eval --model models/tiny-moe
  moe-harness eval --model models/tiny-moe --method frequency-pruning --ratio 0.25
  moe-harness eval --model models/tiny-moe --tasks brown-cloze,brown-agreement --sample 300 --json
  moe-harness eval --model DIR --tasks arc_easy,piqa --data-dir ~/datasets --limit 100
`)
  cmd.action(async (flags: EvalFlags) => {
    const where: { stage: EvalStage } = { stage: { what: 'starting' } }
    // Ctrl-C printed nothing (the process died of the signal, as the shell's 130, skipping the exit hooks
    // that remove spilled overrides and half-written graph files). eval keeps no results, so there is
    // nothing to finish first: say what was lost and how to rerun, and exit 130 as an interrupted sweep does.
    const onSignal = () => {
      stopAllProgress()
      process.stderr.write(`\n${interruptedLine(where.stage)}\n`)
      process.exit(130)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    try {
      await runEval(flags, where)
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  })
}

/** What eval is doing, for the line an interrupt prints. */
type EvalStage =
  | { what: 'starting' }
  | { what: 'preparing'; method: string; calibration?: 'one-pass' | 'sequential' }
  | { what: 'scoring'; task: string; index: number; tasks: number; calibrated: boolean }

/** The one line Ctrl-C prints: what was running, what was (not) saved, how to rerun. */
export function interruptedLine(s: EvalStage): string {
  if (s.what === 'starting') return 'interrupted before scoring: nothing was scored or saved; rerun the same command to evaluate'
  if (s.what === 'preparing') {
    if (!s.calibration) return `interrupted while applying ${s.method}: nothing was scored or saved; rerun the same command to evaluate`
    return `interrupted while preparing the ${s.method} variant (calibration and the method): nothing was scored and eval saves no results; ` +
      `${s.calibration === 'sequential' ? "the layers' calibration statistics completed so far are cached" : 'calibration statistics are cached once complete'}, and rerunning the same command reuses them`
  }
  return `interrupted while scoring ${s.task} (task ${s.index} of ${s.tasks}): eval saves no results, so the scores so far are lost; rerun the same command to evaluate again` +
    `${s.calibrated ? ' (its calibration statistics are cached)' : ''}, or use sweep, which keeps finished cells and resumes`
}

/**
 * INVALID_ARGUMENT when --neuron-topk would replace the keep share the method set: mergeEdits lets the
 * flag win, so `--method neuron-top-k --ratio 0.5 --neuron-topk 0.9` scored keep 0.9 and reported it
 * as neuron-top-k ratio 0.5. (--mask-experts adds removals to the method's, which is what it says.)
 */
function refuseReplacedHooks(method: string, variant: VariantEdits, hooks: VariantEdits): void {
  for (const [layer, h] of Object.entries(hooks.layers)) {
    const own = variant.layers[Number(layer)]?.neuronKeep
    if (h.neuronKeep !== undefined && own !== undefined) {
      fail('INVALID_ARGUMENT', `--neuron-topk ${h.neuronKeep} would replace the share of neurons method ${method} keeps (${own} in layer ${layer}), and the result would be reported as ${method}'s; pass either --neuron-topk or the method's --ratio.`)
    }
  }
}

function positiveNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) fail('INVALID_ARGUMENT', `${flag} must be a positive number, got '${value}'.`)
  return n
}

/** Token counts are whole: --max-length 40.5 and --batch-tokens 100.7 were taken as given. */
function positiveInteger(flag: string, value: string | undefined): number | undefined {
  const n = positiveNumber(flag, value)
  if (n !== undefined && !Number.isInteger(n)) fail('INVALID_ARGUMENT', `${flag} must be a whole number of tokens, got '${value}'.`)
  return n
}

/**
 * SEQUENCE_TOO_LONG before calibrating or applying a method when the longest request of the selected
 * documents (an upper bound, src/tasks/requestBound.ts) would not fit in memory even alone in its batch
 * (src/pool/memoryFit.ts oneSequenceFit, the pool's rule). A rolling-window task scores each document in
 * windows as long as the model's context (lm-eval's HF backend): before attention worked in blocks
 * (src/onnx/sequenceChunks.ts) a 10,000-token document on a DeepSeek-V2-Lite config needed about 65 GB and
 * ran into the kernel's OOM killer after the method's calibration; the need now grows about linearly
 * with the window, but a long enough one still does not fit. Batches of several rows are not judged here: how
 * many rows a batch gets depends on the requests' real lengths, and a refusal must never be wrong.
 * `o.sessionStateBytes`: what the scoring session holds per weight tensor (memoryFit.ts sessionBytes).
 */
export function checkEvalFits(spec: ModelSpec, longest: number, weightBytes: number, availableBytes: number, o: { maxLengthGiven: boolean; floatWeights: boolean; sessionStateBytes?: number }): void {
  const session = o.sessionStateBytes ?? 0
  const fit = oneSequenceFit(spec, longest, weightBytes + session, availableBytes)
  if (fit.fits) return
  const cap = fit.longestFitting > 0
    ? `cap every sequence with --max-length ${fit.longestFitting}${o.maxLengthGiven ? '' : " (rolling windows are then cut there, where lm-eval's HF backend uses the model's whole context)"}, or `
    : ''
  fail('SEQUENCE_TOO_LONG', `The longest request of these documents (up to ${longest} tokens) needs about ${formatBytes(fit.needBytes)} scored alone (${weightBytes > 0 ? `weights ${formatBytes(weightBytes)}${o.floatWeights ? ' held as float32, MOE_HARNESS_WEIGHTS=memory' : ''}; ` : ''}`
    + `${session > 0 ? `onnxruntime's session state ${formatBytes(session)}; ` : ''}activations grow with the length), more than ${Math.round(MEMORY_SAFETY * 100)}% of the ${formatBytes(availableBytes)} available. `
    + `Nothing was calibrated or scored. To fit: ${cap}score other documents (--limit, --sample), or free memory.`)
}

export function subsetFromFlags(flags: { limit?: string; sample?: string; seed: string }): SubsetSpec {
  return { limit: positiveNumber('--limit', flags.limit), sample: positiveNumber('--sample', flags.sample), seed: integerFlag('--seed', flags.seed) }
}

async function runEval(flags: EvalFlags, where: { stage: EvalStage }): Promise<void> {
  // Everything that can be wrong is checked before the model is built.
  const ckpt = openCheckpoint(flags.model, checkpointOptions(flags))
  const hookEdits = editsFromFlags(flags, ckpt.spec)
  validateEdits(ckpt.spec, hookEdits)
  const plan = await planFromFlags(flags, ckpt)
  const tasks: TaskDefinition[] = flags.tasks ? await resolveTasks(flags.tasks.split(',').filter(Boolean)) : await builtInTasks()
  const subset = subsetFromFlags(flags)
  const dataDir = flags.dataDir ?? defaultDataDir()
  const loaded: { task: TaskDefinition; data: Awaited<ReturnType<typeof loadTaskDocs>>; docs: { index: number; doc: unknown }[] }[] = []
  for (const task of tasks) {
    const data = await loadTaskDocs(task, dataDir)
    loaded.push({ task, data, docs: selectDocs(task, data.docs, subset) })
  }
  const tokenizer = ckpt.tokenizer()
  const maxLength = positiveInteger('--max-length', flags.maxLength) ?? ckpt.spec.maxPositions
  // As score warns: past the context the windows are scored by rotary extrapolation, and the token
  // perplexity's windows (min(2048, max length)) change with it, so the numbers are not lm-eval's default.
  if (maxLength > ckpt.spec.maxPositions) {
    // Each task's own token window (src/tasks/evaluate.ts), as the windows are cut.
    const tokenWindows = [...new Set(loaded.flatMap(({ task }) => (task.kind === 'rolling' && task.metrics.includes('token_perplexity') ? [Math.min(task.tokenWindow ?? DEFAULTS.tokenPerplexityWindow, maxLength)] : [])))]
    const tokenPart = tokenWindows.length ? ` and token-perplexity windows of ${tokenWindows.join('/')} tokens` : ''
    const longest = loaded.some(({ task }) => task.kind === 'rolling') ? 'rolling windows' : 'requests'
    process.stderr.write(`warning: --max-length ${maxLength} is longer than the model's context (max_position_embeddings ${ckpt.spec.maxPositions}): ${longest} of up to ${maxLength} tokens${tokenPart} are scored past it as transformers would (rotary extrapolation). Omit --max-length, or pass at most ${ckpt.spec.maxPositions}, for numbers comparable with lm-eval's default.\n`)
  }
  const batchTokens = positiveInteger('--batch-tokens', flags.batchTokens)!
  const engine = engineSettings(flags)
  refuseFloat16Range(ckpt, engine)
  if (flags.device === 'cpu') {
    const floatWeights = weightResidency() === 'memory'
    const weights = residentWeightBytes(ckpt, floatWeights)
    const longest = Math.min(Math.max(1, ...loaded.map(l => longestRequestBound(l.task, l.docs, maxLength))), maxLength + 1)
    checkEvalFits(ckpt.spec, longest, weights, availableMemoryBytes(), { maxLengthGiven: flags.maxLength !== undefined, floatWeights, sessionStateBytes: sessionBytes(ckpt) })
  }
  if (plan) where.stage = { what: 'preparing', method: plan.method.name, calibration: plan.needs.length ? plan.procedure : undefined }
  const variant = await prepareFromPlan(ckpt, plan, flags, engine)
  if (variant) refuseReplacedHooks(variant.method, variant.edits, hookEdits)
  const edits = variant ? mergeEdits(variant.edits, hookEdits) : hookEdits
  validateEdits(ckpt.spec, edits)
  if (variant) process.stderr.write(`${describeVariant(ckpt, variant)}\n`)
  const scorer = await withStatus(SESSION_STATUS(ckpt), () => createLocalScorer(ckpt, edits, engine))
  const results: { task: TaskDefinition; evaluation: TaskEvaluation; docs: number; seconds: number }[] = []
  try {
    for (const [i, { task, docs }] of loaded.entries()) {
      where.stage = { what: 'scoring', task: task.name, index: i + 1, tasks: loaded.length, calibrated: Boolean(variant?.calibration) }
      const t0 = performance.now()
      const evaluation = await withProgress(task.name.padEnd(22), docs.length, async progress => {
        const result = await evaluateTask(task, docs, {
          tokenizer, maxLength,
          score: requests => scorer.score(requests, {
            maxBatchTokens: batchTokens,
            onProgress: (done, total) => progress.update(Math.round((done / total) * docs.length), `${done}/${total} requests`),
          }),
        })
        progress.update(docs.length)
        return result
      }, { unit: 'documents' })
      rejectNonfinite(task.name, evaluation, Boolean(flags.allowNonfinite))
      for (const note of evaluation.notes) process.stderr.write(`warning: ${note}\n`)
      results.push({ task, evaluation, docs: docs.length, seconds: (performance.now() - t0) / 1000 })
    }
  } finally {
    await scorer.release()
  }
  process.stdout.write(formatResultsTable(results.map(r => ({ task: r.task, metrics: r.evaluation.metrics, docs: r.docs }))) + '\n')
  if (flags.json) {
    const json = resultsJson(results.map(r => ({ task: r.task, metrics: r.evaluation.metrics, docs: r.docs, total: loaded.find(l => l.task === r.task)!.data.docs.length })))
    const extra = {
      model: ckpt.dir, device: flags.device, precision: resolvePrecision(flags.device, flags.precision), subset: subsetKey(subset), max_length: maxLength,
      // The direct hooks change the model too: a result with them is not the method's alone.
      ...(flags.maskExperts ? { mask_experts: flags.maskExperts } : {}), ...(flags.neuronTopk !== undefined ? { neuron_topk: Number(flags.neuronTopk) } : {}),
      ...(variant ? { method: variant.method, params: variant.params, variant_id: variant.variantId, achieved_ratio: variant.report.achievedRatio, accounting: { ...variant.accounting, layers: undefined }, layers: variant.accounting.layers, calibration: variant.calibration, warnings: variant.warnings } : {}),
      tokens: Object.fromEntries(results.map(r => [r.task.name, r.evaluation.tokens])),
      seconds: Object.fromEntries(results.map(r => [r.task.name, r.seconds])),
      ...(results.some(r => r.evaluation.notes.length) ? { notes: results.flatMap(r => r.evaluation.notes) } : {}),
    }
    process.stdout.write(JSON.stringify({ ...json, config: extra }) + '\n')
  }
}

/**
 * NUMERIC_FAILURE when a task's scores are not finite, as a sweep fails such a cell (src/sweep/cell.ts):
 * an accuracy over NaN log-likelihoods is argmax over NaN (the first choice), which printed
 * "acc 0.0000 ± 0.0000" with exit 0 for a model whose every output was NaN.
 */
function rejectNonfinite(task: string, evaluation: TaskEvaluation, allowed: boolean): void {
  const bad = evaluation.samples.filter(s => s.lls.some(v => !Number.isFinite(v))).length
  const metric = Object.entries(evaluation.metrics).find(([, m]) => m && !Number.isFinite(m.value))
  if (!bad && !metric) return
  const what = bad ? `${bad} of ${evaluation.samples.length} documents have non-finite log-likelihoods` : `metric ${metric![0]} is ${metric![1]!.value}`
  fail('NUMERIC_FAILURE', `${task}: ${what}, so its scores would be meaningless: the model's outputs are not finite (${allowed ? 'NaN/Inf weights, allowed by --allow-nonfinite, or an overflow' : 'an activation overflowed'}). ${allowed ? 'Prune or fix the non-finite weights (without --allow-nonfinite the error names them)' : 'If it ran in float16, score it in float32 (--precision float32)'}.`)
}

/**
 * The variant line: achieved ratio, stored expert parameters, and (when the method zeroed expert weights)
 * their non-zero share. Unstructured pruning (magnitude-pruning, Wanda) stores its zeros densely, so
 * "expert params 100.0%" alone read as if nothing had been pruned; the run page's terms are "stored
 * parameters" and "non-zero parameters" (reports/templates/run.hbs).
 */
function describeVariant(ckpt: Checkpoint, v: NonNullable<Awaited<ReturnType<typeof prepareFromPlan>>>): string {
  const a = v.accounting
  const pct = (x: number, y: number) => `${((100 * x) / y).toFixed(1)}%`
  const zeros = expertZeros(ckpt, v)
  const nonzero = zeros > 0 ? `, ${pct(a.expertParams - zeros, a.baseExpertParams)} non-zero (unstructured: zeros are stored densely, so memory and active params/token are unchanged)` : ''
  return `${v.method} ${JSON.stringify(v.params)}: achieved ratio ${v.report.achievedRatio.toFixed(4)}, ` +
    `expert params ${pct(a.expertParams, a.baseExpertParams)} stored${nonzero}, active params/token ${pct(a.activeParamsPerToken, a.baseActiveParamsPerToken)}` +
    (v.calibration ? `, calibration ${v.calibration.fromCache ? 'cached' : `${v.calibration.seconds.toFixed(1)} s`} (${v.calibration.tokens} tokens)` : '')
}

/**
 * Zero values among the edited weights of the experts the variant stores (accounting's `kept`: removed
 * and novice slots are not stored, a merge group's weights are counted once, as in expertParams).
 * Stored overrides carry their count; in-memory ones are scanned once.
 */
function expertZeros(ckpt: Checkpoint, v: NonNullable<Awaited<ReturnType<typeof prepareFromPlan>>>): number {
  let zeros = 0
  for (const layer of v.accounting.layers) {
    const names = ckpt.names.layers[layer.layer]?.experts ?? []
    for (const e of layer.kept) for (const name of [names[e]?.gate, names[e]?.up, names[e]?.down]) {
      const t = name === undefined ? undefined : v.edits.overrides[name]
      if (t) zeros += overrideZeros(t)
    }
  }
  return zeros
}

export type { MetricName }
