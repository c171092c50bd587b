// RoPE settings of a config.json in both spellings transformers has used: the top-level
// `rope_theta` + `rope_scaling` (transformers 4), and `rope_parameters` (transformers 5:
// `{rope_type, rope_theta, ...scaling fields}`, which wins when present). A rope type the
// engine does not implement is refused by name, never silently run as the default.
import type { RopeScaling } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import type { JsonObject } from "./json-file.js";

const IMPLEMENTED = ["default", "linear", "llama3"];

export interface RopeSettings {
  theta: number;
  scaling: RopeScaling | null;
}

export function parseRope(raw: JsonObject, defaultTheta: number, maxPositions: number, source: string): RopeSettings {
  const bad = (msg: string): never => {
    throw new ModelLoadError(`${source}: ${msg}`, "bad_json");
  };
  const theta = (v: unknown, key: string): number => {
    if (v === undefined || v === null) return defaultTheta;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) return bad(`"${key}" must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const params = raw.rope_parameters;
  if (params !== undefined && params !== null) {
    const p = ropeParametersOf(params, bad);
    // transformers 5 moves the top-level theta into rope_parameters; a file with both keeps it there
    return { theta: theta(p.rope_theta ?? raw.rope_theta, "rope_parameters.rope_theta"), scaling: parseScaling(p, "rope_parameters", maxPositions, source) };
  }
  const s = raw.rope_scaling;
  if (s !== undefined && s !== null && (typeof s !== "object" || Array.isArray(s))) bad(`"rope_scaling" must be an object or null`);
  return { theta: theta(raw.rope_theta, "rope_theta"), scaling: s ? parseScaling(s as JsonObject, "rope_scaling", maxPositions, source) : null };
}

/**
 * The one parameter set of `rope_parameters`. Models with several attention types may key it
 * by layer type ({"full_attention": {...}, "sliding_attention": {...}}); the engine has one
 * RoPE for all layers, so such a file is read only when every entry is the same.
 */
function ropeParametersOf(v: unknown, bad: (msg: string) => never): JsonObject {
  if (typeof v !== "object" || Array.isArray(v) || v === null) return bad(`"rope_parameters" must be an object or null`);
  const o = v as JsonObject;
  const perType = Object.keys(o).length > 0 && Object.entries(o).every(([k, x]) => /_attention$/.test(k) && typeof x === "object" && x !== null && !Array.isArray(x));
  if (!perType) return o;
  const sets = Object.values(o) as JsonObject[];
  const first = JSON.stringify(sets[0]);
  if (sets.some((x) => JSON.stringify(x) !== first)) {
    throw new ModelLoadError(`rope_parameters differ between layer types (${Object.keys(o).join(", ")}): per-layer RoPE is not supported`, "unsupported_architecture");
  }
  return sets[0]!;
}

function parseScaling(o: JsonObject, key: string, maxPositions: number, source: string): RopeScaling | null {
  const type = o.rope_type ?? o.type ?? "default";
  const factorOf = (k: string, fallback?: number): number => {
    const f = o[k] ?? fallback;
    if (typeof f !== "number" || !Number.isFinite(f) || f <= 0) {
      throw new ModelLoadError(`${source}: ${key}.${k} must be a positive number, got ${JSON.stringify(o[k])}`, "bad_json");
    }
    return f;
  };
  const partial = o.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new ModelLoadError(`${source}: ${key}.partial_rotary_factor ${JSON.stringify(partial)} is not supported (only 1)`, "unsupported_architecture");
  }
  if (type === "default") return null;
  if (type === "linear") return { type: "linear", factor: factorOf("factor") };
  if (type === "llama3") {
    return {
      type: "llama3",
      factor: factorOf("factor"),
      lowFreqFactor: factorOf("low_freq_factor"),
      highFreqFactor: factorOf("high_freq_factor"),
      originalMaxPositions: factorOf("original_max_position_embeddings", maxPositions),
    };
  }
  throw new ModelLoadError(
    `${source}: ${key} rope_type ${JSON.stringify(type)} is not supported (supported: ${IMPLEMENTED.map((t) => `"${t}"`).join(", ")})`,
    "unsupported_architecture",
  );
}
