// Moved: the variant-edit model lives in src/edits/variantEdits.ts (issue 12 §2, §7). This re-export
// keeps the many existing importers (methods, calibration, onnx, tests, benches) working unchanged.
export * from '../edits/variantEdits.ts'
