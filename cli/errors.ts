// Errors the CLI reports as one line that says what to do (exit code 2 for usage).
import { MATMUL_PRECISIONS, type MatmulPrecision } from "../native/index.js";

export class UsageError extends Error {
  constructor(
    message: string,
    /** the command whose --help the user should read */
    readonly command: string,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

/** Integer option values: "--port 80x" is a usage error, not NaN. */
/** --matmul-precision: auto or one of MATMUL_PRECISIONS, else a usage error naming the flag and the value. */
export function matmulPrecisionOption(value: string, command: string): MatmulPrecision | "auto" {
  if (value !== "auto" && !(MATMUL_PRECISIONS as readonly string[]).includes(value))
    throw new UsageError(`--matmul-precision must be one of auto, ${MATMUL_PRECISIONS.join(", ")}, got "${value}"`, command);
  return value as MatmulPrecision | "auto";
}

export function intOption(value: string | undefined, name: string, command: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`--${name} must be an integer, got "${value}"`, command);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`, command);
  return n;
}

/** Number option values, with their range (minExclusive: strictly above min). */
export function floatOption(value: string | undefined, name: string, command: string, min: number, max: number, minExclusive = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${value}"`, command);
  if (n < min || n > max || (minExclusive && n === min)) throw new UsageError(`--${name} must be ${minExclusive ? "above" : "at least"} ${min} and at most ${max}, got ${n}`, command);
  return n;
}

/** "auto" or an integer from 1 to max. */
export function autoOrInt(value: string, name: string, command: string, max: number): number | "auto" {
  return value === "auto" ? "auto" : intOption(value, name, command, 1, max)!;
}

const BYTE_UNITS: Record<string, number> = { "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** --kv-cache-memory: bytes ("512MiB", "2GB", "1000000") or a fraction of free memory ("0.5"). */
export function memoryOption(value: string | undefined, name: string, command: string): { bytes: number } | { fraction: number } | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`--${name} must be bytes (like 512MiB or 2GB) or a fraction of free memory (like 0.5), got "${value}"`, command);
  const n = Number(m[1]);
  if (m[2] === "" && n > 0 && n <= 1) return { fraction: n };
  if (m[2] === "" && !Number.isInteger(n)) throw new UsageError(`--${name}: a fraction of free memory must be in (0, 1], got ${n}`, command);
  if (n * unit < 1) throw new UsageError(`--${name} must be more than 0 bytes, got "${value}"`, command);
  return { bytes: Math.floor(n * unit) };
}
