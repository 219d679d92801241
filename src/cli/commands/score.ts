import fs from 'node:fs'
import type { Command } from 'commander'
import { fail } from '../../errors.ts'
import { createLocalScorer } from '../../engine/scorer.ts'
import { SESSION_STATUS, withStatus } from '../progress.ts'
import { readableNumber } from '../../util/numberFormat.ts'
import { validateEdits } from '../../edits/variantEdits.ts'
import { openCheckpoint } from '../../model/checkpoint.ts'
import { checkpointOptions, addDeviceOptions, addHookOptions, addPrecisionOption, editsFromFlags, engineSettings, type EngineFlags } from '../engineOptions.ts'
import { resolvePrecision, weightResidency } from '../../engine/graphSession.ts'
import type { ModelSpec } from '../../model/modelSpec.ts'
import { formatBytes } from '../../util/bytes.ts'
import { availableMemoryBytes, MEMORY_SAFETY, oneSequenceFit, residentWeightBytes, sessionBytes } from '../../pool/memoryFit.ts'

interface ScoreFlags extends EngineFlags {
  model: string
  text?: string
  textFile?: string
  ids?: string
  json?: boolean
}

export function registerScore(program: Command): void {
  const cmd = program
    .command('score')
    .description('Per-token log-probabilities of a text or token ids, their sum and perplexity.')
    .requiredOption('--model <dir>', 'HuggingFace-format checkpoint folder')
    .option('--text <text>', 'text to score (tokenized without special tokens)')
    .option('--text-file <path>', "UTF-8 text file to score, as --text ('-': standard input); for texts longer than a command line holds (~128 kB)")
    .option('--ids <ids>', 'comma-separated token ids to score, e.g. 1,2,3')
    .option('--json', 'print one JSON object as the last line')
  addHookOptions(addPrecisionOption(addDeviceOptions(cmd)))
  cmd.addHelpText('after', `
The first token is context; logprobs[i] = log p(tokens[i+1] | tokens[0..i]).
Examples:
  moe-harness score --model models/tiny-moe --text "The jury said"
  moe-harness score --model DIR --ids 0,312,17,99 --mask-experts "0:1,5" --json
  moe-harness score --model DIR --text-file page.txt --json | tail -n 1 > page-scores.json\n`)
  cmd.action(async (flags: ScoreFlags) => runScore(flags))
}

function parseIds(text: string): number[] {
  const parts = text.split(',').map(s => s.trim())
  // "$A,$B,$C" with a variable unset: a lost id, not a separator to skip.
  const empty = parts.findIndex(p => p === '')
  if (empty >= 0) fail('INVALID_ARGUMENT', `--ids '${text}': element ${empty + 1} is empty (an id lost, e.g. an unset variable); pass ids like 1,2,3.`)
  const ids = parts.map(Number)
  const bad = parts.find((p, i) => !Number.isInteger(ids[i]) || ids[i] < 0 || !/^\d+$/.test(p))
  if (bad !== undefined) fail('INVALID_ARGUMENT', `--ids: '${bad}' is not a non-negative integer; pass ids like 1,2,3.`)
  return ids
}

/**
 * The text of --text-file ('-': standard input) without a leading UTF-8 byte-order mark (an editor's
 * file marker, not text: Python's 'utf-8-sig'). Refused, naming the path, when blank, unreadable, not
 * UTF-8 (naming the first invalid byte), or standard input is a terminal (it would wait for typing with
 * no prompt).
 */
function readTextFile(file: string): string {
  if (file.trim() === '') fail('INVALID_ARGUMENT', `--text-file is ${file === '' ? 'empty' : 'blank'}; pass the path of a UTF-8 text file, or '-' to read standard input.`)
  if (file === '-' && process.stdin.isTTY) fail('INVALID_ARGUMENT', `--text-file -: standard input is a terminal; pipe the text in (e.g. 'cat page.txt | moe-harness score --model DIR --text-file -') or pass a file path.`)
  let bytes: Buffer
  try {
    bytes = fs.readFileSync(file === '-' ? 0 : file)
  } catch (e) {
    return fail('FILE_ACCESS', `--text-file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); pass a readable UTF-8 text file, or '-' to read standard input.`)
  }
  // Strict, as Python's open(): a Latin-1 or binary file decoded with replacement would score U+FFFD
  // characters that are not in the file.
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '')
  } catch {
    const offset = firstInvalidUtf8(bytes)
    const example = file === '-' ? 'iconv -f latin1 -t utf-8 page.txt | moe-harness score ... --text-file -' : `iconv -f latin1 -t utf-8 ${file} > page.txt`
    return fail('INVALID_ARGUMENT', `--text-file ${file} is not UTF-8 text (an invalid byte at offset ${offset}); convert it (e.g. ${example}) and score that.`)
  }
}

/**
 * Byte offset of the first invalid UTF-8 byte: where the lenient decoding first has a U+FFFD that the
 * file does not hold as such (EF BF BD); the text before it is valid, so it re-encodes to the same bytes.
 */
function firstInvalidUtf8(bytes: Buffer): number {
  const text = bytes.toString('utf8')
  for (let i = text.indexOf('\uFFFD'); i >= 0; i = text.indexOf('\uFFFD', i + 1)) {
    const offset = Buffer.byteLength(text.slice(0, i))
    if (!(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)) return offset
  }
  return bytes.length
}

async function runScore(flags: ScoreFlags): Promise<void> {
  if ([flags.text, flags.textFile, flags.ids].filter(x => x !== undefined).length !== 1) fail('INVALID_ARGUMENT', 'Pass exactly one of --text, --text-file or --ids.')
  // Read before the checkpoint opens: a wrong path fails at once, not after loading a model.
  if (flags.textFile !== undefined) flags.text = readTextFile(flags.textFile)
  const ckpt = openCheckpoint(flags.model, checkpointOptions(flags))
  const edits = editsFromFlags(flags, ckpt.spec)
  validateEdits(ckpt.spec, edits)
  const tokens = flags.ids !== undefined ? parseIds(flags.ids) : ckpt.tokenizer().encode(flags.text!)
  if (tokens.length < 2) fail('INVALID_ARGUMENT', `Need at least 2 tokens to score (got ${tokens.length}); the first token is only context.`)
  // transformers scores past max_position_embeddings too (rotary positions extrapolate); lm-eval never
  // sends more than the context, so say so rather than refuse.
  if (tokens.length > ckpt.spec.maxPositions) {
    process.stderr.write(`warning: ${tokens.length} tokens is longer than the model's context (max_position_embeddings ${ckpt.spec.maxPositions}); positions past it are scored as transformers would (rotary extrapolation), not as lm-eval would (it cuts windows of the context). Score at most ${ckpt.spec.maxPositions} tokens for numbers comparable with lm-eval.\n`)
  }
  if (flags.device === 'cpu') checkScoreFits(ckpt.spec, tokens.length, residentWeightBytes(ckpt, weightResidency() === 'memory'), availableMemoryBytes(), sessionBytes(ckpt))
  const scorer = await withStatus(SESSION_STATUS(ckpt), () => createLocalScorer(ckpt, edits, engineSettings(flags)))
  try {
    const [result] = await scorer.score([{ prefix: tokens, branches: [], scorePrefixFrom: 1 }])
    const logprobs = result.prefix
    const sum = logprobs.reduce((a, b) => a + b, 0)
    const perplexity = Math.exp(-sum / logprobs.length)
    const text = flags.text !== undefined ? (id: number) => JSON.stringify(ckpt.tokenizer().decode([id])) : () => ''
    const rows = logprobs.map((lp, i) => `${String(i + 1).padStart(5)}  ${String(tokens[i + 1]).padStart(7)}  ${lp.toFixed(6).padStart(11)}  ${text(tokens[i + 1])}`)
    process.stdout.write(`  pos    token      logprob  text\n${rows.join('\n')}\n`)
    process.stdout.write(`tokens ${tokens.length} | scored ${logprobs.length} | sum ${sum.toFixed(6)} | mean ${(sum / logprobs.length).toFixed(6)} | perplexity ${readableNumber(perplexity, 4)}\n`)
    if (flags.json) {
      process.stdout.write(JSON.stringify({ tokens, logprobs, greedy: result.prefixGreedy, sum, perplexity, device: scorer.session.device, precision: resolvePrecision(flags.device, flags.precision) }) + '\n')
    }
  } finally {
    await scorer.release()
  }
}

/**
 * SEQUENCE_TOO_LONG when one forward pass over `tokens` would not fit in `availableBytes` (the pool's
 * rule, src/pool/memoryFit.ts: resident weights + the worker estimate at 1 x tokens, within 85%). `score`
 * sends the whole text as one sequence. Before attention worked in blocks (src/onnx/sequenceChunks.ts),
 * 16,000 ids on a 163,840-context DeepSeek-V2 config of tiny width passed 8.7 GB of RSS and kept
 * growing; the need now grows about linearly with the length, but a long enough text would still
 * have the kernel kill it (or its neighbours) instead of an error. `sessionStateBytes`: what the
 * session holds per weight tensor (memoryFit.ts sessionBytes), 1.24 GB at 48 x 128 experts whatever the width.
 */
export function checkScoreFits(spec: ModelSpec, tokens: number, weightBytes: number, availableBytes: number, sessionStateBytes = 0): void {
  const { fits, needBytes: need, longestFitting } = oneSequenceFit(spec, tokens, weightBytes + sessionStateBytes, availableBytes)
  if (fits) return
  // As eval names the --max-length that fits: how short is short enough.
  const shorter = longestFitting > 0 ? `score at most ${longestFitting} tokens at a time (a shorter text, or the text in pieces)` : 'score a shorter text'
  fail('SEQUENCE_TOO_LONG', `Scoring ${tokens} tokens as one sequence needs about ${formatBytes(need)} (${weightBytes > 0 ? `weights ${formatBytes(weightBytes)}; ` : ''}${sessionStateBytes > 0 ? `onnxruntime's session state ${formatBytes(sessionStateBytes)}; ` : ''}activations grow with the length), `
    + `more than ${Math.round(MEMORY_SAFETY * 100)}% of the ${formatBytes(availableBytes)} available: ${shorter}, or free memory.`)
}
