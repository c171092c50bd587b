// The fine-tuning methods this server runs, by method.type.
import type { TrainingMethod } from "./method.js";
import { supervised } from "./supervised.js";
import { dpo } from "./dpo.js";
import { rewardModel } from "./reward-model.js";
import { ppo } from "./ppo.js";

export const METHODS: ReadonlyMap<string, TrainingMethod> = new Map([supervised, dpo, rewardModel, ppo].map((m) => [m.type, m]));

/** every method.type OpenAI defines; the ones not in METHODS are refused with a clear 400 */
export const KNOWN_METHOD_TYPES = ["supervised", "dpo", "reinforcement"] as const;
