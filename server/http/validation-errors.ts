// Turns ajv's errors for a request body into one OpenAI-style 400 that names the
// offending parameter the way OpenAI does ("messages[0].role", "temperature").
import { ApiError, errors } from "./errors.js";

/** The fields of an ajv ErrorObject this module reads. */
export interface SchemaError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/**
 * "/messages/0/role" -> "messages[0].role". Array indices get brackets; object keys that
 * look like numbers (logit_bias token ids) stay dotted, so the body is walked alongside.
 */
export function paramFromPointer(pointer: string, body?: unknown): string | null {
  if (pointer === "") return null;
  const parts = pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  let out = "";
  let cur: unknown = body;
  for (const p of parts) {
    const isIndex = /^\d+$/.test(p) && (body === undefined || Array.isArray(cur));
    out += isIndex ? `[${p}]` : out === "" ? p : `.${p}`;
    cur = cur !== null && typeof cur === "object" ? (cur as Record<string, unknown>)[p] : undefined;
  }
  return out;
}

function joinParam(base: string | null, key: string): string {
  return base === null ? key : `${base}.${key}`;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return "a string";
  if (typeof value === "number")
    return !Number.isFinite(value) ? "a number out of range" : Number.isInteger(value) ? "an integer" : `a fractional number (${value})`;
  return typeof value === "undefined" ? "nothing" : `a ${typeof value}`;
}

function valueAt(root: unknown, pointer: string): unknown {
  let cur: unknown = root;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

const depth = (e: SchemaError): number =>
  e.instancePath.split("/").length + (e.keyword === "required" || e.keyword === "additionalProperties" ? 1 : 0);

/** At equal depth: a wrong value says more than a wrong type, which says more than a missing field. */
function rank(e: SchemaError): number {
  switch (e.keyword) {
    case "type":
      return 1;
    case "required":
    case "additionalProperties":
      return 0;
    default:
      return 2;
  }
}

const better = (a: SchemaError, b: SchemaError): SchemaError =>
  depth(b) > depth(a) || (depth(b) === depth(a) && rank(b) > rank(a)) ? b : a;

/** Unions whose branches are too different to name a part: their errors are reported whole (per route). */
const WHOLE_PARAMS: Record<string, Record<string, string>> = {
  "/v1/completions": {
    prompt: "'prompt' must be a string, an array of strings, an array of token ids, or an array of arrays of token ids.",
  },
  "/v1/feedback": {
    prompt: "'prompt' must be a string (one user turn) or a non-empty array of chat messages.",
  },
};

/**
 * Picks the most specific error (the deepest path: inside a union, the branch that got
 * furthest names the real culprit) and words it for a client.
 */
export function validationError(errs: readonly SchemaError[], body: unknown, route?: string): ApiError {
  if (errs.length === 0) return errors.invalidRequest("The request body is invalid.", null);
  // unions report one error per branch and then "anyOf"; the best branch error wins,
  // and type/const errors at that same path are merged ("expected a number or null")
  const concrete = errs.filter((e) => e.keyword !== "anyOf" && e.keyword !== "oneOf");
  const pool = concrete.length > 0 ? concrete : errs;
  const best = pool.reduce(better);
  const top = paramFromPointer("/" + (best.instancePath.split("/")[1] ?? ""));
  const whole = top === null || route === undefined ? undefined : WHOLE_PARAMS[route]?.[top];
  if (whole !== undefined && best.keyword === "type") return errors.invalidRequest(whole, top, "invalid_type");
  const param = paramFromPointer(best.instancePath, body);
  const value = valueAt(body, best.instancePath);
  const where = param ?? "the request body";

  switch (best.keyword) {
    case "required": {
      const missing = joinParam(param, String(best.params.missingProperty));
      return errors.invalidRequest(`Missing required parameter: '${missing}'.`, missing, "missing_required_parameter");
    }
    case "type": {
      const expected = new Set<string>();
      for (const e of pool) if (e.keyword === "type" && e.instancePath === best.instancePath) expected.add(String(e.params.type));
      const list = [...expected].join(" or ");
      return errors.invalidRequest(
        `Invalid type for '${where}': expected ${list}, but got ${describe(value)}.`,
        param,
        "invalid_type",
      );
    }
    case "additionalProperties": {
      const key = String(best.params.additionalProperty);
      if (param === "logit_bias")
        return errors.invalidRequest(
          `Invalid key '${key}' in 'logit_bias': keys must be token ids (non-negative integers written in decimal).`,
          param,
        );
      // a field we do not know is one we do not implement: refused by name, never ignored
      const named = joinParam(param, key);
      return errors.invalidRequest(`Unsupported parameter: '${named}' is not supported by this server.`, named, "unsupported_parameter");
    }
    case "enum":
    case "const": {
      const allowed: unknown[] = [];
      for (const e of pool)
        if ((e.keyword === "enum" || e.keyword === "const") && e.instancePath === best.instancePath)
          allowed.push(...((e.params.allowedValues as unknown[] | undefined) ?? [e.params.allowedValue]));
      return errors.invalidRequest(
        `Invalid value for '${where}': ${JSON.stringify(value)}. Supported values are: ${allowed.map((v) => JSON.stringify(v)).join(", ")}.`,
        param,
      );
    }
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum": {
      const cmp = String(best.params.comparison);
      return errors.invalidRequest(
        `Invalid value for '${where}': ${JSON.stringify(value)}; it must be ${cmp} ${String(best.params.limit)}.`,
        param,
      );
    }
    case "minItems":
      return errors.invalidRequest(`'${where}' must hold at least ${String(best.params.limit)} item(s).`, param);
    case "maxItems":
      return errors.invalidRequest(`'${where}' may hold at most ${String(best.params.limit)} item(s).`, param);
    case "minLength":
      return errors.invalidRequest(`'${where}' must not be empty.`, param);
    case "maxLength":
      return errors.invalidRequest(`'${where}' is longer than ${String(best.params.limit)} characters.`, param);
    default:
      return errors.invalidRequest(`Invalid value for '${where}': ${best.message ?? "it does not match the schema"}.`, param);
  }
}
