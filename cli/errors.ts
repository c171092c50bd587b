// Errors the CLI reports as one line that says what to do (exit code 2 for usage).
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
