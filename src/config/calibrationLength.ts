// A calibration length the user gave (--calibration-length, calibration.length) checked against the
// context of the model it calibrates, before any calibration runs.
import { DEFAULTS } from '../defaults.ts'
import { fail } from '../errors.ts'

/**
 * INVALID_ARGUMENT (a CLI flag) or CONFIG_INVALID (a config field) when a calibration window is longer
 * than the model's context (max_position_embeddings): the papers calibrate within it (NAEE/Wanda:
 * 128 × 2048 on 2048/4096-token models) and positions past it are rotary extrapolation. Before attention
 * worked in blocks of rows (src/onnx/sequenceChunks.ts), --calibration-length 100000 on a 64-token-context
 * model also filled 21 GB of memory before anything refused it. `model` names the model (its folder).
 */
export function checkCalibrationLength(length: number, maxPositions: number, model: string, given: { flag: string } | { configFile: string }): void {
  if (length <= maxPositions) return
  const what = 'flag' in given ? `${given.flag} ${length}` : `calibration.length ${length} in ${given.configFile}`
  fail('flag' in given ? 'INVALID_ARGUMENT' : 'CONFIG_INVALID', `${what} is longer than the context of ${model} (max_position_embeddings ${maxPositions} in its config.json): `
    + `a calibration window must fit the model's context (positions past it would be scored by rotary extrapolation; the papers calibrate within it). `
    + `Use at most ${maxPositions}, or leave it unset for the default min(${DEFAULTS.calibration.maxLength}, the model's context).`)
}
