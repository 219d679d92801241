// lm-eval's rules in Python's terms: string measurements and transforms (pyString.ts, the task ports),
// numpy/torch argmax ties (metrics.argmax, the graph's is_greedy), special tokens as transformers'
// AutoTokenizer resolves them (specialTokens.ts) and the fingerprint over the resolved settings.
// Expected strings were computed with CPython 3.11 (noted per case).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { encodeFromFloat32, writeSafetensors } from '../../src/model/safetensors.ts'
import { resolveSpecialTokens } from '../../src/model/specialTokens.ts'
import { loadTokenizer, type TextTokenizer } from '../../src/model/tokenizer.ts'
import { countChars, countWords, encodePair, lmEvalEncode } from '../../src/tasks/lmEvalTokens.ts'
import { argmax } from '../../src/tasks/metrics.ts'
import { loadTask } from '../../src/tasks/registry.ts'
import { pyCapitalize, pyIsSpace, pyLen, pyLstrip, pyReSplitWhitespace, pyRstrip, pySplit, pyStrip } from '../../src/util/pyString.ts'
import { preprocess } from '../../tasks/hellaswag.ts'
import { wikitextDetokenize } from '../../tasks/wikitext.ts'
import { tinyTokenizerJson, writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('Python string semantics (pyString.ts)', () => {
  it('len() counts code points: astral characters 1, combining marks separately', () => {
    assert.equal(pyLen('a\u{1F600}b'), 3) // 'a😀b': JS .length is 4
    assert.equal(pyLen('e\u0301'), 2)
    assert.equal(pyLen('\u{1D400}\u{1D401}\u{1D402}'), 3)
    assert.equal(pyLen('\u200b'), 1)
    assert.equal(pyLen('\ud800x'), 2) // a lone surrogate is one code point
    assert.equal(countChars('caf\u00e9 \u{1F600}'), 6)
  })

  it('whitespace is str.isspace(): U+001C-U+001F, U+0085 yes; U+FEFF, U+200B no', () => {
    for (const c of ['\u001c', '\u001f', '\u0085', '\u00a0', '\u2028', '\u3000', '\t', ' ']) assert.ok(pyIsSpace(c), JSON.stringify(c))
    for (const c of ['\ufeff', '\u200b', '\u180e', 'a']) assert.ok(!pyIsSpace(c), JSON.stringify(c))
    const s = ' \u001f\ufeffa b\u00a0\u2028\u200b\u0085'
    // CPython: s.strip() == '\ufeffa b\xa0\u2028\u200b', lstrip keeps the tail, rstrip the head.
    assert.equal(pyStrip(s), '\ufeffa b\u00a0\u2028\u200b')
    assert.equal(pyLstrip(s), '\ufeffa b\u00a0\u2028\u200b\u0085')
    assert.equal(pyRstrip(s), ' \u001f\ufeffa b\u00a0\u2028\u200b')
    assert.notEqual(s.trim(), pyStrip(s), 'JS trim strips U+FEFF and keeps U+0085')
    assert.deepEqual(pySplit(s), ['\ufeffa', 'b', '\u200b'])
    assert.equal(pyReSplitWhitespace(s).length, 5)
    // len(re.split(r"\s+", ...)) == 4: U+001C and U+001F split, U+FEFF and U+200B do not.
    assert.equal(countWords('\u001ctwo\u001fwords \ufeffjoined\u200bhere'), 4)
  })

  it('capitalize() puts the first code point in TITLE case and lower-cases the rest', () => {
    assert.equal(pyCapitalize('\u00dfeta'), 'Sseta') // JS toUpperCase would give 'SSeta'
    assert.equal(pyCapitalize('\u01c6ungla'), '\u01c5ungla') // dž -> Dž, not DŽ
    assert.equal(pyCapitalize('\u{10400}BC'), '\u{10400}bc')
    assert.equal(pyCapitalize('\u0391\u03a3 \u039f\u0394\u039f\u03a3'), '\u0391\u03c2 \u03bf\u03b4\u03bf\u03c2') // final sigmas
    assert.equal(pyCapitalize(''), '')
  })

  it('task ports use Python\'s regex classes and slicing', async () => {
    // hellaswag: re's "." stops only at "\n" (JS "." also at "\r" and U+2028).
    assert.equal(preprocess('keep [drop\rthis] and [a\nb] [c\u2028d]'), 'keep and [a\nb] ')
    // wikitext: \s is Python's whitespace: U+001F and U+00A0 are trimmed inside brackets, U+FEFF is not.
    assert.equal(wikitextDetokenize('( x\u001f) (\ufeffy\ufeff) (\u00a0z )'), '(x) (\ufeffy\ufeff) (z)')
    const copa = (await loadTask('copa')) as any
    const p = copa.prompt({ premise: '\u{1D400} premise.\u001f', choice1: '\u{10400}x', choice2: 'Y', question: 'cause', label: 0 })
    // premise.strip()[:-1] drops the period (not half a surrogate); choice[0].lower() lowers an astral letter.
    assert.equal(p.context, '\u{1D400} premise because')
    assert.deepEqual(p.choices, [' \u{10428}x', ' y'])
    const obqa = (await loadTask('openbookqa')) as any
    assert.equal(obqa.prompt({ question_stem: 'q', choices: { text: ['a', 'b'], label: ['A', 'B'] }, answerKey: '\u3000B' }).gold, 1)
    const wino = (await loadTask('winogrande')) as any
    assert.equal(wino.prompt({ sentence: 'A _ went.\u001f', option1: 'x', option2: 'y', answer: '1' }).continuation, 'went.')
  })
})

describe('argmax ties resolve to the first maximum (numpy.argmax)', () => {
  it('exact ties, infinities and NaN', () => {
    assert.equal(argmax([3, 3, 1]), 0)
    assert.equal(argmax([1, 3, 3]), 1)
    assert.equal(argmax([-Infinity, -Infinity]), 0)
    assert.equal(argmax([1, NaN, 2, NaN]), 1) // numpy: the first NaN
    assert.equal(argmax([-1 / 1, 0 / 0]), 1)
    // acc_norm of an empty choice: ll / 0 = -Infinity, never preferred over a finite score.
    assert.equal(argmax([-2 / 1, -1 / 0]), 0)
  })

  it('the graph\'s is_greedy counts an exact tie only for the first maximal token', async () => {
    const dir = tmpDir()
    const model = writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', seed: 3 })
    // A zero head ties every logit: torch's argmax (lm-eval's greedy token) is then token 0 everywhere.
    const tensors = Object.fromEntries([...model.tensors].map(([n, t]) => [n, { dtype: 'F32' as const, shape: t.shape, data: encodeFromFloat32(n === 'lm_head.weight' ? new Float32Array(t.data.length) : t.data, 'F32') }]))
    writeSafetensors(path.join(model.dir, 'model.safetensors'), tensors)
    const scorer = await createLocalScorer(openCheckpoint(model.dir), emptyEdits(), { device: 'cpu', threads: 1 })
    try {
      const [r] = await scorer.score([{ prefix: [5, 6], branches: [[0, 0], [7, 0], [0]] }])
      assert.deepEqual(r.branchGreedy, [[true, true], [false, true], [true]])
      assert.ok(Math.abs(r.branches[0][0] + Math.log(320)) < 1e-5, 'uniform distribution over the 320-token vocabulary')
    } finally {
      await scorer.release()
    }
  })
})

/** A checkpoint folder with the tiny byte-level tokenizer plus Qwen's chat tokens (ids after the vocabulary). */
function tokenizerFolder(files: Record<string, unknown>, modelConfig: Record<string, unknown> = { model_type: 'qwen3_moe', vocab_size: 320 }): { dir: string; json: Record<string, unknown>; config: Record<string, unknown> } {
  const dir = tmpDir()
  const json = JSON.parse(tinyTokenizerJson())
  const next = Object.keys(json.model.vocab).length
  for (const [i, content] of ['<|im_start|>', '<|im_end|>'].entries()) {
    json.added_tokens.push({ id: next + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  }
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json))
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content))
  return { dir, json, config: modelConfig }
}

describe('special tokens as AutoTokenizer resolves them, and lm-eval\'s prefix token', () => {
  const vocabSize = Object.keys(JSON.parse(tinyTokenizerJson()).model.vocab).length
  const EOT = 0 // <|endoftext|>
  const IM_START = vocabSize
  const IM_END = vocabSize + 1

  it('"bos_token": null means no BOS (no fall-through to config.json bos_token_id): the prefix is EOS', () => {
    const f = tokenizerFolder({ 'tokenizer_config.json': { bos_token: null, eos_token: '<|im_end|>', tokenizer_class: 'Qwen2Tokenizer' } }, { model_type: 'qwen3_moe', vocab_size: 320, bos_token_id: EOT })
    const s = resolveSpecialTokens(f.dir, f.config, f.json)
    assert.deepEqual(s.tokens.bos_token, { content: null, id: undefined, source: 'tokenizer_config.json' })
    assert.equal(s.tokens.eos_token.id, IM_END)
    assert.equal(loadTokenizer(f.dir, f.config).prefixTokenId, IM_END)
  })

  it('an absent bos_token takes the tokenizer class default: none for Qwen2, "<s>" (added) for Llama', () => {
    const qwen = tokenizerFolder({ 'tokenizer_config.json': { eos_token: '<|im_end|>', tokenizer_class: 'Qwen2TokenizerFast' } })
    const q = resolveSpecialTokens(qwen.dir, qwen.config, qwen.json)
    assert.equal(q.tokens.bos_token.source, 'class default (Qwen2TokenizerFast)')
    assert.equal(q.tokens.bos_token.content, null)
    assert.equal(q.tokens.unk_token.id, EOT)
    assert.equal(loadTokenizer(qwen.dir, qwen.config).prefixTokenId, IM_END)
    // LlamaTokenizerFast: "<s>", "</s>", "<unk>" are not in this vocabulary, so they are added in that order.
    const llama = tokenizerFolder({ 'tokenizer_config.json': { tokenizer_class: 'LlamaTokenizerFast' } }, { model_type: 'mixtral', vocab_size: 320 })
    const l = resolveSpecialTokens(llama.dir, llama.config, llama.json)
    assert.deepEqual(l.added, [{ id: IM_END + 1, content: '<s>' }, { id: IM_END + 2, content: '</s>' }, { id: IM_END + 3, content: '<unk>' }])
    assert.equal(l.tokens.bos_token.id, IM_END + 1)
    const tok = loadTokenizer(llama.dir, llama.config)
    assert.equal(tok.prefixTokenId, IM_END + 1)
    assert.deepEqual(tok.encode('a<s>'), [...tok.encode('a'), IM_END + 1], 'the added token is matched in text, as HF does')
  })

  it('special_tokens_map.json overrides tokenizer_config.json unless the config has added_tokens_decoder', () => {
    const legacy = tokenizerFolder({ 'tokenizer_config.json': { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' }, 'special_tokens_map.json': { bos_token: '<|im_start|>' } })
    const a = resolveSpecialTokens(legacy.dir, legacy.config, legacy.json)
    assert.equal(a.tokens.bos_token.id, IM_START)
    assert.equal(a.tokens.bos_token.source, 'special_tokens_map.json')
    assert.deepEqual(a.files, ['tokenizer_config.json', 'special_tokens_map.json'])
    const modern = tokenizerFolder({ 'tokenizer_config.json': { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', added_tokens_decoder: {} }, 'special_tokens_map.json': { bos_token: '<|im_start|>' } })
    assert.equal(resolveSpecialTokens(modern.dir, modern.config, modern.json).tokens.bos_token.id, EOT)
    // Only the map: no tokenizer_config.json at all.
    const mapOnly = tokenizerFolder({ 'special_tokens_map.json': { bos_token: { content: '<|im_start|>', lstrip: false, normalized: false, rstrip: false, single_word: false }, eos_token: '<|im_end|>' } })
    const m = resolveSpecialTokens(mapOnly.dir, mapOnly.config, mapOnly.json)
    assert.equal(m.tokens.bos_token.id, IM_START)
    assert.equal(loadTokenizer(mapOnly.dir, mapOnly.config).prefixTokenId, IM_START)
  })

  it('AddedToken dicts in tokenizer_config.json resolve by their content', () => {
    const f = tokenizerFolder({ 'tokenizer_config.json': { bos_token: { __type: 'AddedToken', content: '<|im_start|>', lstrip: false, normalized: false, rstrip: false, single_word: false }, eos_token: '<|im_end|>' } })
    assert.equal(loadTokenizer(f.dir, f.config).prefixTokenId, IM_START)
  })

  it('without tokenizer_config.json the class comes from config.json model_type', () => {
    const qwen = tokenizerFolder({})
    const q = resolveSpecialTokens(qwen.dir, qwen.config, qwen.json)
    assert.deepEqual(q.tokenizerClass, { name: 'Qwen2Tokenizer', from: 'config.json model_type', defaultsKnown: true })
    assert.equal(loadTokenizer(qwen.dir, qwen.config).prefixTokenId, EOT, 'Qwen2: no BOS, EOS <|endoftext|>')
    const olmoe = tokenizerFolder({}, { model_type: 'olmoe', vocab_size: 320 })
    assert.equal(loadTokenizer(olmoe.dir, olmoe.config).prefixTokenId, EOT, 'GPT-NeoX: BOS <|endoftext|>')
  })

  it('a named token outside the vocabulary is added; one beyond vocab_size, or an unknown class, is a clear error', () => {
    const f = tokenizerFolder({ 'tokenizer_config.json': { bos_token: '<bos>', eos_token: '<|im_end|>' } }, { model_type: 'qwen3_moe', vocab_size: IM_END + 1 })
    assert.throws(() => loadTokenizer(f.dir, f.config), (e: any) => e.code === 'TOKENIZER_INVALID' && /"<bos>".*vocab_size/.test(e.message))
    const g = tokenizerFolder({ 'tokenizer_config.json': { bos_token: '<bos>' } }, { model_type: 'qwen3_moe', vocab_size: 320 })
    assert.equal(loadTokenizer(g.dir, g.config).prefixTokenId, IM_END + 1)
    const u = tokenizerFolder({ 'tokenizer_config.json': { eos_token: '<|im_end|>', tokenizer_class: 'MysteryTokenizer' } })
    assert.throws(() => loadTokenizer(u.dir, u.config), (e: any) => e.code === 'TOKENIZER_INVALID' && /bos_token.*MysteryTokenizer.*tokenizer_config\.json/.test(e.message))
    const bad = tokenizerFolder({ 'tokenizer_config.json': { bos_token: 5 } })
    assert.throws(() => loadTokenizer(bad.dir, bad.config), (e: any) => e.code === 'TOKENIZER_INVALID' && /"bos_token" is 5/.test(e.message))
  })
})

describe('lm-eval request encoding (HFLM.tok_encode, TemplateLM.loglikelihood)', () => {
  /** One id per character (code point); "^" stands for a BOS the post-processor adds; prefix token 1. */
  const chars = (t: string) => Array.from(t, c => c.codePointAt(0)!)
  const toy = (addsBos: boolean): TextTokenizer => ({
    encode: t => chars(t).map(c => (c === 0x5e ? 1 : c)),
    encodeWithSpecials: t => [...(addsBos ? [1] : []), ...chars(t).map(c => (c === 0x5e ? 1 : c))],
    decode: ids => ids.map(i => (i === 1 ? '^' : String.fromCodePoint(i))).join(''),
    prefixTokenId: 1,
    size: 0x110000,
  })

  it('trailing Python whitespace (U+001F) moves to the continuation; U+FEFF stays in the context', () => {
    assert.deepEqual(encodePair(toy(false), 'ab\u001f', 'c'), { context: chars('ab'), continuation: chars('\u001fc') })
    assert.deepEqual(encodePair(toy(false), 'ab\ufeff', 'c'), { context: chars('ab\ufeff'), continuation: chars('c') })
  })

  it('the tokenizer\'s default special tokens are added, except to a text starting with the prefix token', () => {
    assert.deepEqual(lmEvalEncode(toy(true), 'ab'), [1, ...chars('ab')])
    assert.deepEqual(lmEvalEncode(toy(true), '^ab'), [1, ...chars('ab')])
    assert.deepEqual(encodePair(toy(true), 'ab', 'c'), { context: [1, ...chars('ab')], continuation: chars('c') })
  })

  it('an empty context is the prefix token, unless the continuation starts with it', () => {
    assert.deepEqual(encodePair(toy(true), '', ' c'), { context: [1], continuation: chars(' c') })
    assert.deepEqual(encodePair(toy(true), '', '^c'), { context: [1], continuation: chars('c') })
  })
})

describe('the model fingerprint covers the resolved tokenizer settings', () => {
  it('editing bos_token changes it; reformatting tokenizer_config.json or adding a no-op special_tokens_map does not', () => {
    const dir = tmpDir()
    const m = writeTinyCheckpoint(path.join(dir, 'm'), { family: 'qwen3_moe', seed: 2 })
    const cfg = path.join(m.dir, 'tokenizer_config.json')
    const base = openCheckpoint(m.dir).fingerprint()
    const original = JSON.parse(fs.readFileSync(cfg, 'utf8'))
    fs.writeFileSync(cfg, JSON.stringify(original, null, 4) + '\n\n')
    assert.equal(openCheckpoint(m.dir).fingerprint(), base, 'whitespace only')
    fs.writeFileSync(path.join(m.dir, 'special_tokens_map.json'), JSON.stringify({ bos_token: original.bos_token }))
    assert.equal(openCheckpoint(m.dir).fingerprint(), base, 'a map that resolves to the same tokens')
    fs.writeFileSync(path.join(m.dir, 'special_tokens_map.json'), JSON.stringify({ bos_token: null }))
    const noBos = openCheckpoint(m.dir).fingerprint()
    assert.notEqual(noBos, base, 'special_tokens_map.json overriding bos_token with null')
    fs.rmSync(path.join(m.dir, 'special_tokens_map.json'))
    fs.writeFileSync(cfg, JSON.stringify({ ...original, bos_token: null }))
    const nullBos = openCheckpoint(m.dir).fingerprint()
    assert.notEqual(nullBos, base, 'bos_token null in tokenizer_config.json')
    assert.equal(nullBos, noBos, 'the same resolved settings from either file')
    fs.writeFileSync(cfg, '{ not json')
    const broken = openCheckpoint(m.dir).fingerprint()
    assert.ok(/^[0-9a-f]{64}$/.test(broken) && broken !== base, 'an unreadable tokenizer_config.json still fingerprints (by its bytes)')
  })
})
