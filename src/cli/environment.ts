// The harness's environment variables, checked before a command starts: a bad value must stop the
// command at once with its fix, not fail cells one by one after calibration (each variable's parser
// stays with the module that owns it).
import { spillBudgetBytes } from '../edits/overrideSpill.ts'
import { weightResidency } from '../engine/graphSession.ts'
import { graphCacheLimitBytes } from '../onnx/graphStore.ts'

/** Throws CONFIG_INVALID naming the variable and its fix when MOE_HARNESS_SPILL_MB, _WEIGHTS or _GRAPH_CACHE_GB is malformed. */
export function checkEnvironment(): void {
  spillBudgetBytes()
  weightResidency()
  graphCacheLimitBytes()
}
