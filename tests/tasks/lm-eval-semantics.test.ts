// lm-eval's request construction, prompts and metric arithmetic, checked on hand-worked cases.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TextTokenizer } from '../../src/model/tokenizer.ts'
import { encodePair, rollingWindows, countWords } from '../../src/tasks/lmEvalTokens.ts'
import { accuracyMetric, argmax, documentPerplexity, meanStderr, weightedPerplexity } from '../../src/tasks/metrics.ts'
import { loadTask } from '../../src/tasks/registry.ts'
import { preprocess } from '../../tasks/hellaswag.ts'
import { wikitextDetokenize } from '../../tasks/wikitext.ts'

/** A toy tokenizer: one token per word-with-leading-space, so boundaries are visible. */
const vocab = new Map<string, number>()
const toy: TextTokenizer = {
  encode: text => (text.match(/ ?[^ ]+| +/g) ?? []).map(piece => {
    if (!vocab.has(piece)) vocab.set(piece, vocab.size + 10)
    return vocab.get(piece)!
  }),
  encodeWithSpecials: text => toy.encode(text),
  decode: () => '',
  prefixTokenId: 1,
  size: 1000,
}
const id = (piece: string) => toy.encode(piece)[0]

describe('request tokenization (TemplateLM._encode_pair)', () => {
  it('moves trailing whitespace of the context into the continuation', () => {
    const p = encodePair(toy, 'Question: why?\nAnswer: ', 'Paris')
    assert.deepEqual(p.context, toy.encode('Question: why?\nAnswer:'))
    assert.deepEqual(p.continuation, [id(' Paris')])
  })

  it('takes the continuation as the suffix of tok(context + continuation)', () => {
    const p = encodePair(toy, 'The cat', ' sat down')
    assert.deepEqual(p.context, [id('The'), id(' cat')])
    assert.deepEqual(p.continuation, [id(' sat'), id(' down')])
  })

  it('uses the prefix token for an empty context', () => {
    assert.deepEqual(encodePair(toy, '', 'Hello world'), { context: [1], continuation: toy.encode('Hello world') })
  })
})

describe('rolling windows (get_rolling_token_windows + make_disjoint_window)', () => {
  it('predicts every token exactly once with a full window of context', () => {
    const tokens = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    const w = rollingWindows(tokens, 1, 4)
    assert.deepEqual(w, [
      [[1], [11, 12, 13, 14]],
      [[14], [15, 16, 17, 18]],
      [[16, 17, 18], [19, 20]],
    ])
    // Each window's input is (context + continuation)[:-1] and never longer than max_seq_len.
    for (const [ctx, cont] of w) assert.ok(ctx.length + cont.length - 1 <= 4)
    assert.deepEqual(w.flatMap(([, c]) => c), tokens)
  })
})

describe('task prompts match lm-eval', () => {
  it('arc, boolq, piqa, openbookqa, rte', async () => {
    const arc = (await loadTask('arc-easy')) as any
    assert.deepEqual(arc.prompt({ question: 'Which is a gas?', choices: { text: ['ice', 'steam'], label: ['1', '2'] }, answerKey: '2' }),
      { context: 'Question: Which is a gas?\nAnswer:', choices: ['ice', 'steam'], gold: 1 })
    const boolq = (await loadTask('boolq')) as any
    assert.deepEqual(boolq.prompt({ question: 'is it wet', passage: 'Water is wet.', label: 1 }),
      { context: 'Water is wet.\nQuestion: is it wet?\nAnswer:', choices: ['no', 'yes'], gold: 1 })
    const piqa = (await loadTask('piqa')) as any
    assert.equal(piqa.prompt({ goal: 'Open a jar', sol1: 'a', sol2: 'b', label: 0 }).context, 'Question: Open a jar\nAnswer:')
    const obqa = (await loadTask('openbookqa')) as any
    assert.deepEqual(obqa.prompt({ question_stem: 'The sun is', choices: { text: ['hot', 'cold'], label: ['A', 'B'] }, answerKey: ' A' }),
      { context: 'The sun is', choices: ['hot', 'cold'], gold: 0 })
    const rte = (await loadTask('rte')) as any
    assert.equal(rte.prompt({ sentence1: 'A dog ran.', sentence2: 'An animal ran.', label: 0 }).context, 'A dog ran.\nQuestion: An animal ran. True or False?\nAnswer:')
  })

  it('winogrande partial scoring: options fill the blank as contexts, the rest is the continuation', async () => {
    const wino = (await loadTask('winogrande')) as any
    assert.deepEqual(wino.prompt({ sentence: 'Sam gave Kim a book because _ was kind.', option1: 'Sam', option2: 'Kim', answer: '1' }),
      { contexts: ['Sam gave Kim a book because Sam', 'Sam gave Kim a book because Kim'], continuation: 'was kind.', gold: 0 })
  })

  it('hellaswag preprocessing and query', async () => {
    assert.equal(preprocess(' Removing ice [title] Use salt. [step] Pour it.  Done '), 'Removing ice. Use salt.  Pour it. Done'.replace('  ', ' '))
    const hs = (await loadTask('hellaswag')) as any
    const doc = hs.process({ activity_label: 'Cooking', ctx_a: 'A man stirs a pot.', ctx_b: 'then HE adds Salt', endings: ['a [b] c', 'd'], label: '1' }, 0)
    assert.deepEqual(doc, { query: 'Cooking: A man stirs a pot. Then he adds salt', choices: ['a c', 'd'], gold: 1 })
  })

  it('copa, mmlu and lambada', async () => {
    const copa = (await loadTask('copa')) as any
    assert.deepEqual(copa.prompt({ premise: 'The man broke his toe.', choice1: 'He dropped a hammer.', choice2: 'He sang.', question: 'cause', label: 0 }),
      { context: 'The man broke his toe because', choices: [' he dropped a hammer.', ' he sang.'], gold: 0 })
    const mmlu = (await loadTask('mmlu')) as any
    assert.equal(mmlu.prompt({ question: ' 2+2? ', subject: 'abstract_algebra', choices: ['1', '2', '3', '4'], answer: 3 }).context,
      'The following are multiple choice questions (with answers) about abstract algebra.\n\n2+2?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:')
    const lambada = (await loadTask('lambada-openai')) as any
    assert.deepEqual(lambada.prompt({ text: 'he opened the door' }), { context: 'he opened the', continuation: ' door' })
  })

  it('wikitext detokenizer', () => {
    assert.equal(wikitextDetokenize(' = = Early life = = \n He was born in 1 @,@ 000 ( or so ) , it " seems " . \n'),
      ' == Early life ==\nHe was born in 1,000 (or so), it "seems".\n')
    assert.equal(countWords(' a  b\nc '), 5)
  })
})

describe('metrics', () => {
  it('argmax keeps the first maximum, as numpy', () => {
    assert.equal(argmax([-1, -0.5, -0.5]), 1)
  })
  it('stderr is the Bessel-corrected standard error of the mean', () => {
    const m = accuracyMetric([1, 0, 1, 1])
    assert.equal(m.value, 0.75)
    assert.ok(Math.abs(m.stderr! - Math.sqrt((0.75 * 0.25 * 4) / 3 / 4)) < 1e-12)
    assert.ok(Math.abs(meanStderr([2, 4, 4, 4, 5, 5, 7, 9]) - 2.138089935299395 / Math.sqrt(8)) < 1e-12)
  })
  it('perplexities', () => {
    assert.ok(Math.abs(documentPerplexity([-2, -4]).value - Math.exp(3)) < 1e-12)
    const w = weightedPerplexity([-10, -20], [5, 10])
    assert.ok(Math.abs(w.perplexity - Math.exp(2)) < 1e-12)
    assert.ok(Math.abs(w.bitsPer - 2 / Math.LN2) < 1e-12)
  })
})
