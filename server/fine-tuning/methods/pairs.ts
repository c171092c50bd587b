// Preference pairs of a job's files (training_file "feedback" exports OpenAI's DPO lines),
// validated and encoded as the engine's preference trainers take them.
import type { LoadedModel } from "../../../engine/model.js";
import { encodePairs, parsePreferenceJsonl, PreferenceDataError, type EncodedPair } from "../../../engine/train/pref-data.js";

export function encodeJobPairs(model: LoadedModel, text: string, what: string): EncodedPair[] {
  const ctx = { tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, maxLength: Math.min(model.maxContext, model.config.maxPositions) };
  const { encoded, errors } = encodePairs(ctx, parsePreferenceJsonl(text, what));
  if (errors.length > 0) throw new PreferenceDataError(what, errors);
  if (encoded.length === 0) throw new PreferenceDataError(what, [{ line: 0, reason: "no pair has a learned token left within the model's context" }]);
  return encoded;
}
