// What a user coming from the Hugging Face Hub passes to --model, and the fix the error names: a Hub id
// (nothing is downloaded; the cached snapshot when there is one), the Hub cache's repo folder
// (models--org--name: its snapshot), a file instead of its folder, a broken config.json link, a folder
// one level above the checkpoint. Before, each said only "does not exist" / "has no config.json".
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

function message(dir: string): string {
  try {
    openCheckpoint(dir, { warn: () => {} })
  } catch (e) {
    assert.ok(e instanceof HarnessError, String(e))
    assert.equal(e.code, 'CHECKPOINT_NOT_FOUND')
    return e.message
  }
  assert.fail(`${dir} opened`)
}

describe('--model paths that are not a checkpoint folder name the folder to pass', () => {
  const root = tmpDir()
  const src = path.join(root, 'src')
  writeTinyCheckpoint(src, { family: 'olmoe', seed: 2 })
  // A Hub cache as huggingface_hub lays it out: refs/main -> snapshots/<hash>/<file> -> ../../blobs/<id>.
  const hub = path.join(root, 'hf', 'hub')
  const repo = path.join(hub, 'models--acme--tiny-moe')
  const snap = path.join(repo, 'snapshots', 'c0ffee')
  fs.mkdirSync(snap, { recursive: true })
  fs.mkdirSync(path.join(repo, 'blobs'))
  fs.mkdirSync(path.join(repo, 'refs'))
  fs.writeFileSync(path.join(repo, 'refs', 'main'), 'c0ffee')
  fs.mkdirSync(path.join(repo, 'snapshots', 'old'))
  for (const [i, f] of fs.readdirSync(src).entries()) {
    fs.copyFileSync(path.join(src, f), path.join(repo, 'blobs', `b${i}`))
    fs.symlinkSync(`../../blobs/b${i}`, path.join(snap, f))
  }

  it('the cached snapshot opens (the links resolve)', () => {
    assert.equal(openCheckpoint(snap, { warn: () => {} }).spec.family, 'olmoe')
  })

  it('a Hub id: nothing is downloaded; the cached snapshot is named when there is one', () => {
    const before = process.env.HF_HUB_CACHE
    process.env.HF_HUB_CACHE = hub
    try {
      const cached = message('acme/tiny-moe')
      assert.match(cached, /Hugging Face cache/)
      assert.match(cached, /never downloads/)
      assert.ok(cached.includes(`--model ${snap}`), cached)
      const absent = message('acme/other-moe')
      assert.match(absent, /If it is a Hugging Face Hub id/)
      assert.match(absent, /huggingface-cli download acme\/other-moe --local-dir DIR/)
      assert.ok(!absent.includes('cache:'), absent)
    } finally {
      if (before === undefined) delete process.env.HF_HUB_CACHE
      else process.env.HF_HUB_CACHE = before
    }
  })

  it('the cache repo folder names its snapshot (refs/main first)', () => {
    const m = message(repo)
    assert.ok(m.includes(`--model ${snap}`), m)
    assert.match(m, /Hugging Face cache folder/)
  })

  it('a file names its folder; a broken config.json link says so; a parent folder names its checkpoint', () => {
    assert.ok(message(path.join(src, 'config.json')).includes(`(here: ${src})`))
    const broken = path.join(root, 'broken')
    fs.mkdirSync(broken)
    fs.symlinkSync(path.join(root, 'gone', 'config.json'), path.join(broken, 'config.json'))
    assert.match(message(broken), /config\.json is a broken symbolic link/)
    const parent = path.join(root, 'parent')
    fs.mkdirSync(parent)
    fs.cpSync(src, path.join(parent, 'OLMoE-tiny'), { recursive: true })
    assert.ok(message(parent).includes(`its subfolder ${path.join(parent, 'OLMoE-tiny')}`))
    assert.match(message(path.join(root, 'no-such')), /does not exist/)
  })

  it('a folder without safetensors names the weights it holds and the fix; a PEFT adapter folder says what it is', () => {
    const cases: [string, RegExp][] = [
      ['pytorch_model.bin', /PyTorch pickle weights \(pytorch_model\.bin\).*save_pretrained/],
      ['model.gguf', /GGUF weights \(model\.gguf\)/],
      ['consolidated.safetensors', /holds consolidated\.safetensors/],
      ['adapter_model.safetensors', /PEFT \(LoRA\) adapter/],
    ]
    for (const [file, want] of cases) {
      const dir = path.join(root, `weights-${file}`)
      fs.mkdirSync(dir)
      for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(src, f), path.join(dir, f))
      fs.writeFileSync(path.join(dir, file), 'x')
      const m = message(dir)
      assert.match(m, /has no model\.safetensors/)
      assert.match(m, want)
    }
    const adapter = path.join(root, 'adapter')
    fs.mkdirSync(adapter)
    fs.writeFileSync(path.join(adapter, 'adapter_config.json'), JSON.stringify({ base_model_name_or_path: 'acme/tiny-moe', peft_type: 'LORA' }))
    fs.writeFileSync(path.join(adapter, 'adapter_model.safetensors'), 'x')
    assert.match(message(adapter), /PEFT \(LoRA\) adapter \(its base model: acme\/tiny-moe\)/)
  })
})
