// Why a --model path is not a checkpoint folder, said in the terms of someone who got the model from
// the Hugging Face Hub: a Hub id (the harness reads local folders only, it never downloads), the Hub
// cache's repo folder `models--org--name` (the checkpoint is one of its snapshots), a file instead of
// its folder, a broken symbolic link (an interrupted download), a folder one level above the checkpoint.
// The Hub cache layout (huggingface_hub file_download.py): <cache>/models--<org>--<name>/refs/<branch>
// holds a commit hash, snapshots/<hash>/ holds the repo's files as links into blobs/.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ROOT } from '../paths.ts'

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/

const isDir = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false

/** The Hub cache folder huggingface_hub uses: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(): string {
  if (process.env.HF_HUB_CACHE) return path.resolve(process.env.HF_HUB_CACHE)
  const home = process.env.HF_HOME || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface')
  return path.join(path.resolve(home), 'hub')
}

/** Snapshot folders of a Hub cache repo folder, the one `refs/main` names first. */
function snapshots(repoDir: string): string[] {
  const dir = path.join(repoDir, 'snapshots')
  if (!isDir(dir)) return []
  const all = fs.readdirSync(dir).filter(n => isDir(path.join(dir, n)))
  let main = ''
  try {
    main = fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8').trim()
  } catch { /* no refs/main: list them all */ }
  return [...all.filter(n => n === main), ...all.filter(n => n !== main)].map(n => path.join(dir, n))
}

function withConfig(dirs: string[]): string[] {
  return dirs.filter(d => fs.existsSync(path.join(d, 'config.json')))
}

const listed = (dirs: string[]) => dirs.slice(0, 3).join(', ') + (dirs.length > 3 ? `, … (${dirs.length - 3} more)` : '')

/** The fix for a --model path that does not exist or is not a folder. */
export function missingFolderHint(dirArg: string, dir: string): string {
  const st = fs.lstatSync(dir, { throwIfNoEntry: false })
  if (st?.isSymbolicLink() && !fs.existsSync(dir)) return `${dirArg} is a broken symbolic link (to ${fs.readlinkSync(dir)}); point --model at the folder itself.`
  if (st && !st.isDirectory()) {
    const parent = path.dirname(dir)
    return `${dirArg} is a file, not a folder; pass the folder that holds config.json${fs.existsSync(path.join(parent, 'config.json')) ? ` (here: ${parent})` : ''}.`
  }
  // README's `--model models/tiny-moe` run from another folder: it suggested downloading it from the Hub.
  const inProject = path.resolve(ROOT, dirArg)
  if (!path.isAbsolute(dirArg) && inProject !== dir && fs.existsSync(path.join(inProject, 'config.json'))) {
    return `Model folder ${dirArg} does not exist in the current folder (${dir}); relative paths start there. The harness project has ${dirArg}: pass --model ${inProject}, or run the command from ${ROOT}.`
  }
  if (HUB_ID.test(dirArg)) {
    const repo = path.join(hubCacheDir(), `models--${dirArg.replace('/', '--')}`)
    const cached = withConfig(snapshots(repo))
    if (cached.length) return `Model folder ${dirArg} does not exist (${dir}), but the Hugging Face Hub model ${dirArg} is in your Hugging Face cache: pass --model ${cached[0]}. moe-harness reads local folders only; it never downloads.`
    return `Model folder ${dirArg} does not exist (${dir}). If it is a Hugging Face Hub id: moe-harness reads local folders only (it never downloads); run \`huggingface-cli download ${dirArg} --local-dir DIR\` and pass --model DIR.`
  }
  return `Model folder ${dirArg} does not exist; pass a HuggingFace-format folder with config.json and *.safetensors.`
}

/** The fix for an existing folder without a readable config.json. */
export function noConfigHint(dir: string): string {
  const cfg = path.join(dir, 'config.json')
  const st = fs.lstatSync(cfg, { throwIfNoEntry: false })
  if (st?.isSymbolicLink()) {
    return `${dir}/config.json is a broken symbolic link (to ${fs.readlinkSync(cfg)}), as an interrupted or cleaned-up download leaves it; download the model again.`
  }
  const adapter = path.join(dir, 'adapter_config.json')
  if (fs.existsSync(adapter)) {
    let baseModel = ''
    try {
      const b = (JSON.parse(fs.readFileSync(adapter, 'utf8')) as { base_model_name_or_path?: unknown }).base_model_name_or_path
      if (typeof b === 'string' && b) baseModel = ` (its base model: ${b})`
    } catch { /* unreadable adapter config: no base model named */ }
    return `${dir} is a PEFT (LoRA) adapter${baseModel}, not a model: merge it into its base model (peft: PeftModel.from_pretrained(base, DIR).merge_and_unload().save_pretrained(OUT)) and pass OUT.`
  }
  const snaps = withConfig(snapshots(dir))
  if (snaps.length) return `${dir} is a Hugging Face cache folder, not a checkpoint folder; pass one of its snapshots: --model ${listed(snaps)}.`
  let subs: string[] = []
  try {
    subs = withConfig(fs.readdirSync(dir).map(n => path.join(dir, n)).filter(isDir))
  } catch { /* unreadable: the generic message */ }
  if (subs.length) return `${dir} has no config.json, but ${subs.length === 1 ? 'its subfolder' : 'these subfolders'} ${listed(subs)} ${subs.length === 1 ? 'has' : 'have'} one; pass that folder to --model.`
  return `${dir} has no config.json; it is not a HuggingFace checkpoint folder.`
}

/**
 * The fix for a folder with config.json but neither model.safetensors nor an index: the weight files it
 * does hold, in the formats people have (PyTorch pickles, GGUF, a PEFT adapter, a safetensors file
 * under another name), and what to do with them.
 */
export function noWeightsHint(dir: string): string {
  let files: string[] = []
  try {
    files = fs.readdirSync(dir).sort()
  } catch { /* unreadable: the generic message */ }
  const base = `${dir} has no model.safetensors (or sharded model-0000N-of-0000M.safetensors with model.safetensors.index.json)`
  const pickles = files.filter(f => /\.(bin|pt|pth|ckpt)$/.test(f))
  const gguf = files.filter(f => f.endsWith('.gguf'))
  const others = files.filter(f => f.endsWith('.safetensors'))
  if (others.includes('adapter_model.safetensors')) {
    return `${base}; its adapter_model.safetensors is a PEFT (LoRA) adapter, not a model: merge it into its base model (peft: PeftModel.from_pretrained(base, DIR).merge_and_unload().save_pretrained(OUT)) and pass OUT.`
  }
  if (others.length) {
    return `${base}; it holds ${listed(others)}, a name transformers does not load either (weights in another layout, such as Mistral's consolidated files, or shards whose index is missing): pass the folder in Hugging Face format, or restore its model.safetensors.index.json.`
  }
  if (pickles.length) {
    return `${base}; it holds PyTorch pickle weights (${listed(pickles)}), which moe-harness does not read (unpickling can run code): convert them once with transformers, e.g. python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('${dir}').save_pretrained('OUT')", and pass OUT.`
  }
  if (gguf.length) return `${base}; it holds GGUF weights (${listed(gguf)}), which moe-harness does not read: use the original safetensors checkpoint.`
  return `${base}.`
}
