// The engine's public API.
export { Engine } from "./engine.js";
export type { EngineModel, EngineOptions, EngineStats, EngineCounters, ModelRunner } from "./engine.js";
export { EngineError } from "./errors.js";
export type { EngineErrorCode } from "./errors.js";
export { loadModel } from "./model.js";
export type { LoadedModel, LoadModelOptions } from "./model.js";
export type * from "./types.js";
