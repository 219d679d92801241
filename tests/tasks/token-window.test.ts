// The pruning papers' token perplexity ("WikiText-2 PPL at 2048", evaluation-protocol.md §4.2): the
// documents joined with "\n\n", tokenized once, cut into disjoint windows of the task's tokenWindow,
// by default 2048 tokens and never longer than the model's context. The default had been the model's
// context, so a 163,840-token DeepSeek-V2 context scored the whole corpus as one window.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyResult, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { evaluateTask } from '../../src/tasks/evaluate.ts'
import { loadTask, loadTaskDocs } from '../../src/tasks/registry.ts'
import { lastJson, ROOT, runCli } from '../helpers/cli.ts'

const tokenizer = openCheckpoint(path.join(ROOT, 'models', 'tiny-moe')).tokenizer()

/**
 * brown-perplexity's first `docs` documents at `maxLength`: the corpus tokens and the requests evaluateTask
 * builds (its token-perplexity windows come after every document's rolling windows).
 */
async function build(docs: number, maxLength: number): Promise<{ requests: ScoreRequest[]; ids: number[] }> {
  const task = await loadTask('brown-perplexity')
  const selected = (await loadTaskDocs(task)).docs.slice(0, docs)
  let requests: ScoreRequest[] = []
  await evaluateTask(task, selected, { tokenizer, maxLength, score: async rs => { requests = [...rs]; return rs.map(emptyResult) } })
  const ids = tokenizer.encode(selected.map(d => (task.prompt(d.doc) as { text: string }).text).join('\n\n'))
  return { requests, ids }
}

/** The last floor(corpus / window) requests are the corpus cut into disjoint `window`-token windows, first token context only. */
function assertWindows(requests: ScoreRequest[], ids: number[], window: number): void {
  const n = Math.floor(ids.length / window)
  assert.ok(n >= 2, `${ids.length} tokens`)
  requests.slice(-n).forEach((r, i) => {
    assert.deepEqual(r.prefix, ids.slice(i * window, (i + 1) * window), `window ${i}`)
    assert.equal(r.scorePrefixFrom, 1)
  })
}

describe('token-perplexity windows', () => {
  it('are 2048 tokens at a longer context, as many as the corpus holds whole', async () => {
    const { requests, ids } = await build(400, 163_840)
    assertWindows(requests, ids, 2048)
  })

  it('are the context at a shorter one', async () => {
    const { requests, ids } = await build(60, 256)
    assertWindows(requests, ids, 256)
  })
})

// A corpus shorter than one window has no token perplexity (GPTQ/Wanda: numel // seqlen windows); it
// used to be left out of the results without a word, as a run with --limit often is.
describe('token perplexity of a corpus shorter than one window', () => {
  async function evaluate(docs: number, maxLength: number) {
    const task = await loadTask('brown-perplexity')
    const selected = (await loadTaskDocs(task)).docs.slice(0, docs)
    const evaluation = await evaluateTask(task, selected, { tokenizer, maxLength, score: async rs => rs.map(emptyResult) })
    const ids = tokenizer.encode(selected.map(d => (task.prompt(d.doc) as { text: string }).text).join('\n\n'))
    return { evaluation, tokens: ids.length }
  }

  it('is absent with a note naming the task, its tokens, the window and the fix', async () => {
    const { evaluation, tokens } = await evaluate(3, 163_840)
    assert.ok(tokens < 2048, `${tokens} tokens`)
    assert.equal(evaluation.metrics.token_perplexity, undefined)
    assert.ok(evaluation.metrics.word_perplexity)
    assert.equal(evaluation.notes.length, 1)
    const note = evaluation.notes[0]!
    assert.match(note, /^brown-perplexity: token_perplexity not computed/)
    assert.ok(note.includes(`3 documents joined are ${tokens} tokens, fewer than one 2048-token window`), note)
    assert.match(note, /--limit/)
    assert.match(note, /tokenWindow/)
  })

  it('has no note once the corpus holds a window', async () => {
    const { evaluation } = await evaluate(3, 64)
    assert.ok(evaluation.metrics.token_perplexity)
    assert.deepEqual(evaluation.notes, [])
  })

  it('is a warning of eval, on stderr and in --json', () => {
    const r = runCli(['eval', '--model', path.join(ROOT, 'models', 'tiny-moe'), '--tasks', 'brown-perplexity', '--limit', '1', '--json'])
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /warning: brown-perplexity: token_perplexity not computed: its 1 document joined are \d+ tokens, fewer than one 256-token window/)
    const json = lastJson(r.stdout)
    assert.equal(json.results['brown-perplexity'].token_perplexity, undefined)
    assert.match(json.config.notes[0], /token_perplexity not computed/)
  })
})
