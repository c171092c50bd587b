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
