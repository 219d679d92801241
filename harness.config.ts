import { defineConfig } from './src/index.ts'

// The default sweep (`npm start`): every method on the built-in model at four ratios, scored on
// the built-in tasks with the same seeded, stratified subset for every method.
export default defineConfig({
  models: { 'tiny-moe': 'models/tiny-moe' },
  methods: [
    'frequency-pruning',
    'reap',
    'ean',
    // NAEE and Wanda calibrate sequentially as their authors do; one-pass rows are shown for comparison.
    { method: 'naee', params: { calibration: ['sequential', 'one-pass'] } },
    'novice-replacement',
    'hc-smoe',
    'm-smoe',
    { method: 'magnitude-pruning', params: { score: 'magnitude' } },
    { method: 'magnitude-pruning', params: { score: 'wanda', calibration: ['sequential', 'one-pass'] } },
    'neuron-top-k',
  ],
  ratios: [0, 0.25, 0.5, 0.75],
  tasks: ['brown-cloze', 'brown-agreement', 'brown-next-sentence', 'brown-perplexity', 'nlp-corpus-perplexity'],
  subset: { sample: 150, seed: 1234 },
  calibration: { source: 'builtin', sequences: 64, length: 256, seed: 42 },
  // On 2 cores, 2 workers × 1 thread beat 1 × 2 (npm start 4m51s vs 5m32s; npm run bench:sweep).
  pool: { workers: 2, threads: 1 },
  store: '.harness/results.sqlite',
  report: { outDir: 'reports/site', title: 'MoE sparsification leaderboard: built-in model' },
})
