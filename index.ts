// hybridchat's public API: `import { createServer, Engine, loadModel } from "hybridchat"`.
export { createServer, HybridchatServer, BUILTIN_SERVED_NAME } from "./server/server.js";
export type { ServerOptions, ListenOptions } from "./server/server.js";
export { buildApp, attachModel, DEFAULT_MAX_BODY_BYTES } from "./server/http/app.js";
export type { AppOptions } from "./server/http/app.js";
export { ApiError } from "./server/http/errors.js";
export type { ErrorBody, ErrorType } from "./server/http/errors.js";
export { Engine, EngineError, loadModel } from "./engine/index.js";
export type * from "./engine/index.js";
export { ModelLoadError } from "./engine/load-errors.js";
export type { ModelLoadErrorCode } from "./engine/load-errors.js";
export { initCheckpoint } from "./engine/init-checkpoint.js";
export type { InitOptions } from "./engine/init-checkpoint.js";
export { PRESETS, preset, presetNames } from "./engine/presets.js";
export { ensureBuiltinModel } from "./engine/builtin.js";
export { HybridchatClient, FeedbackResource } from "./clients/client.js";
export type { FeedbackBody, FeedbackOptions, FeedbackQuery, FeedbackType, Preference } from "./clients/client.js";
