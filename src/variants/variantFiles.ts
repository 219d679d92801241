// Moved: a prepared variant's folder is read and written by src/edits/variantFolder.ts. This re-export
// keeps the worker (src/runtime/poolWorker.ts) and tests working unchanged.
export { readVariantFiles, writeVariantFiles } from '../edits/variantFolder.ts'
