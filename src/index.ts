// The public surface for plugin authors: methods/*.ts, tasks/*.ts and harness.config.ts import from here.
export { defineMethod, p } from './methods/defineMethod.ts'
export type {
  BooleanParam, CalibrationProcedure, EnumParam, ExpertControls, IntegerParam, LayerReport, MethodContext, MethodDefinition, MethodFamily, MethodLogger, MethodReport, MoeLayout, NumberParam,
  ParamShape, ParamSpec, ParamValues, RuntimeKnobs, WeightStore,
} from './methods/defineMethod.ts'
export {
  checkUniformRemoval, combinations, dropLowest, kthSmallest, layerRemovalCount, maxWeightAssignment, removalCount, removedShare, removeLowestPerLayer, smallestIndices, stableArgsort, superExperts,
} from './methods/helpers.ts'
export { globalGroupAllocation, hcsmoeGroups, MERGE_EPS, mergeGroup, msmoeGroups, uniformGroups, usageFrequencies } from './methods/merging.ts'
export type { CalibrationStats, LayerExpertOutputs, LayerInputNorms, LayerRouting, LayerSamples, LayerTargets, StatNeed } from './calibration/stats.ts'
export { median } from './calibration/stats.ts'
export { defineTask, InvalidRecordError, labelIndex } from './tasks/defineTask.ts'
export type { MetricName, MultipleChoicePrompt, MultipleInputPrompt, RollingPrompt, TaskDefinition } from './tasks/defineTask.ts'
// Python's string semantics for ports of lm-eval task code (never JS .length / trim / \s).
export * from './util/pyString.ts'
export { defineConfig } from './config/defineConfig.ts'
export type { HarnessConfig, HarnessConfigInput } from './config/defineConfig.ts'
export type { MoeLayerSpec } from './model/modelSpec.ts'
export { neuronsKept } from './edits/variantEdits.ts'
export type { LayerHooks, VariantEdits } from './edits/variantEdits.ts'
