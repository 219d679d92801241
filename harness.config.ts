import { defineConfig } from './src/config/defineConfig.ts'

export default defineConfig({
  models: { 'tiny-moe': 'models/tiny-moe' },
  ratios: [0, 0.25, 0.5, 0.75],
})
