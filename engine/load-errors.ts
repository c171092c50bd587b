// The one error class model loading throws: a stable code for the server and CLI,
// and a message that names the file or tensor and what was expected.

export type ModelLoadErrorCode =
  | "unsupported_architecture"
  | "missing_file"
  | "bad_json"
  | "missing_tensor"
  | "unexpected_tensor"
  | "shape_mismatch"
  | "bad_safetensors"
  | "bad_gguf"
  | "unsupported_adapter";

export class ModelLoadError extends Error {
  constructor(
    message: string,
    readonly code: ModelLoadErrorCode,
  ) {
    super(message);
    this.name = "ModelLoadError";
  }
}
