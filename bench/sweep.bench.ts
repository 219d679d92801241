// npm run bench:sweep: cells per minute and tokens per second of the sweep's worker pool at
// 1 worker × 2 threads and 2 workers × 1 thread, against the best single-session configuration
// (one in-process session scoring the same cells), and the share of the sweep spent outside
// scoring (transforms, session builds, calibration, database). Last line: one JSON object.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseConfig } from '../src/config/defineConfig.ts'
import { emptyEdits } from '../src/edits/variantEdits.ts'
import { createLocalScorer } from '../src/engine/scorer.ts'
import { openCheckpoint } from '../src/model/checkpoint.ts'
import { MODELS_DIR, ROOT } from '../src/paths.ts'
import { runSweep } from '../src/sweep/runSweep.ts'
import { evaluateTask } from '../src/tasks/evaluate.ts'
import { loadTaskDocs, resolveTasks, selectDocs } from '../src/tasks/registry.ts'
import { mergeEdits } from '../src/edits/variantEdits.ts'
import { planVariant, prepareVariant } from '../src/variants/prepare.ts'

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-bench-sweep-'))
process.env.MOE_HARNESS_HOME = home
const raw = {
  models: { 'tiny-moe': path.join(MODELS_DIR, 'tiny-moe') },
  methods: ['frequency-pruning', 'reap', 'neuron-top-k', 'expert-merging'],
  ratios: [0.25, 0.5],
  tasks: ['brown-cloze', 'brown-agreement', 'brown-next-sentence'],
  subset: { sample: 100, seed: 1234 },
  calibration: { sequences: 32, length: 256 },
}
try {
  const results: Record<string, unknown> = {}
  for (const [workers, threads] of [[1, 2], [2, 1]]) {
    const config = parseConfig({ ...raw, pool: { workers, threads } }, 'bench config')
    const db = path.join(home, `w${workers}.sqlite`)
    // Calibration is cached after the first configuration; both runs prepare their variants afresh.
    fs.rmSync(path.join(home, 'variants'), { recursive: true, force: true })
    const s = await runSweep({ config, baseDir: ROOT, db })
    const t = s.timings
    const outside = t.calibration + t.transform + t.database + t.sessionBuild / workers
    results[`workers${workers}x${threads}`] = {
      cells: s.completed, seconds: t.total, cellsPerMinute: (60 * s.completed) / t.total, tokensPerSecond: s.tokensScored / t.total,
      outsideScoringShare: outside / t.total, timings: t,
    }
    console.log(`${workers} worker(s) × ${threads} thread(s): ${s.completed} cells in ${t.total.toFixed(1)} s = ${((60 * s.completed) / t.total).toFixed(1)} cells/min, ${(s.tokensScored / t.total).toFixed(0)} tokens/s; outside scoring ${((100 * outside) / t.total).toFixed(1)}%`)
  }
  // Best single-session configuration: one in-process session per variant, 2 threads, no pool.
  const ckpt = openCheckpoint(raw.models['tiny-moe'])
  const tasks = await resolveTasks(raw.tasks)
  const t0 = performance.now()
  let tokens = 0, cells = 0
  for (const method of raw.methods) {
    for (const ratio of raw.ratios) {
      const v = await prepareVariant(ckpt, await planVariant(ckpt, method, { ratio }), { calibration: { source: 'builtin', sequences: 32, length: 256, seed: 42 }, device: 'cpu', threads: 2 })
      const scorer = await createLocalScorer(ckpt, mergeEdits(emptyEdits(), v.edits), { device: 'cpu', threads: 2 })
      for (const task of tasks) {
        const docs = selectDocs(task, (await loadTaskDocs(task)).docs, raw.subset)
        const r = await evaluateTask(task, docs, { tokenizer: ckpt.tokenizer(), maxLength: ckpt.spec.maxPositions, score: q => scorer.score(q) })
        tokens += r.tokens.processed
        cells++
      }
      await scorer.release()
    }
  }
  const single = (performance.now() - t0) / 1000
  results.singleSession = { cells, seconds: single, cellsPerMinute: (60 * cells) / single, tokensPerSecond: tokens / single }
  console.log(`single in-process session (2 threads): ${cells} cells in ${single.toFixed(1)} s = ${((60 * cells) / single).toFixed(1)} cells/min, ${(tokens / single).toFixed(0)} tokens/s`)
  console.log(JSON.stringify({ benchmark: 'sweep', cpus: os.cpus().length, ...results }))
} finally {
  fs.rmSync(home, { recursive: true, force: true })
}
