// --device cpu|cuda|auto → the engine's device. "auto" takes CUDA when the library loads
// and sees a device; an explicit "cuda" without one is refused before anything loads,
// naming the library paths searched (the native side checks again: cuda_library.cc).
import { native, type DeviceKind } from "../native/index.js";

export const DEVICE_CHOICES = ["cpu", "cuda", "auto"] as const;
export type DeviceChoice = (typeof DEVICE_CHOICES)[number];

export class DeviceUnavailableError extends Error {}

export function resolveDevice(choice: DeviceChoice): DeviceKind {
  if (choice === "cpu") return "cpu";
  const s = native().cudaStatus();
  if (s.devices > 0) return "cuda";
  if (choice === "auto") return "cpu";
  throw new DeviceUnavailableError(
    `--device cuda: no usable CUDA device: ${s.error ?? "none found"} (library paths searched: ${s.searched.join(", ")}; ` +
      "set HYBRIDCHAT_CUDA_LIB to the libhybridchat_cuda.so to load, or use --device cpu)",
  );
}

/**
 * What a training command or fine-tuning job on a cuda model runs where: the weights, KV pool,
 * tape, gradients and optimizer state are resident on the device, and generation (PPO
 * rollouts) and the training forward/backward and optimizer steps all run there, so switching
 * between them moves no weights; with `devices` tensor-parallel ranks, rank r's shards on device r.
 */
export function cudaTrainingLine(devices = 1): string {
  const name = native().cudaStatus().deviceName ?? "?";
  const where = devices > 1 ? `CUDA devices 0-${devices - 1} (${name}; ${devices} tensor-parallel ranks)` : `CUDA device 0 (${name})`;
  return `--device cuda: the model on ${where}: generation and the training forward/backward and optimizer steps run there`;
}

/**
 * One start-up line saying which GEMM serves a cuda model: cuBLASLt (which library), or the
 * library's own fp32 kernel because none was found, naming every path searched. Absence is a
 * fallback, not an error: the builtin GEMM is correct but far from the tensor cores' speed.
 */
export function cudaGemmLine(): string {
  const s = native().cudaStatus();
  if (s.gemm === "cublaslt") return `--device cuda: GEMMs through cuBLASLt ${s.cublasLt.version} (${s.cublasLt.path})`;
  return (
    `--device cuda: WARNING: GEMMs run on the built-in fp32 kernel, far below the GPU's tensor-core speed: ${s.cublasLt.error ?? "cuBLASLt not loaded"}` +
    (s.cublasLt.searched.length ? ` (searched: ${s.cublasLt.searched.join(", ")})` : "") +
    "; install the CUDA toolkit's libcublasLt or `pip install nvidia-cublas-cu12`, or set HYBRIDCHAT_CUBLASLT_LIB to the file"
  );
}
