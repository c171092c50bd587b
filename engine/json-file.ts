// Reading the small JSON files of a checkpoint directory with errors that name the file.
import { readFileSync, existsSync } from "node:fs";
import { ModelLoadError } from "./load-errors.js";

export type JsonObject = Record<string, unknown>;

/** Parses a JSON object file; a missing file or bad JSON becomes a ModelLoadError. */
export function readJsonFile(path: string): JsonObject {
  if (!existsSync(path)) throw new ModelLoadError(`missing file: ${path}`, "missing_file");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ModelLoadError(`cannot read ${path}: ${(e as Error).message}`, "missing_file");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ModelLoadError(`bad JSON in ${path}: ${(e as Error).message}`, "bad_json");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ModelLoadError(`bad JSON in ${path}: expected an object at the top level`, "bad_json");
  }
  return value as JsonObject;
}

/** Like readJsonFile, but an absent file is simply absent (optional files). */
export function readOptionalJsonFile(path: string): JsonObject | null {
  return existsSync(path) ? readJsonFile(path) : null;
}
