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
