/** The harness configuration (harness.config.ts). Fields are documented where they are used. */
export interface HarnessConfig {
  /** Model name → local HuggingFace-format folder. */
  models: Record<string, string>
  /** Method names (files in methods/); omitted = every method. */
  methods?: string[]
  /** Task names (files in tasks/). */
  tasks?: string[]
  /** Ratios swept for every method; 0 is the unpruned baseline row. */
  ratios?: number[]
}

/** Identity helper that gives harness.config.ts editor types. */
export function defineConfig(config: HarnessConfig): HarnessConfig {
  return config
}
