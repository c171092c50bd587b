// The JSON-schema subset structured outputs take (OpenAI's strict subset): objects, arrays,
// enums, const, anyOf, $defs/$ref, required, additionalProperties, and the types string,
// number, integer, boolean, null. Anything else is refused by keyword before compiling, so
// a schema is never half-honoured (a dropped "maxLength" would let invalid output through).

export class UnsupportedSchemaError extends Error {
  constructor(
    /** the keyword (or value) refused */
    readonly keyword: string,
    /** JSON pointer of where it was found, "" = the root */
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = "UnsupportedSchemaError";
  }
}

const TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);
/** keywords that only annotate: they constrain nothing */
const ANNOTATIONS = new Set(["title", "description", "$schema", "$id", "$comment", "examples", "default"]);
const KEYWORDS = new Set([
  ...ANNOTATIONS,
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "enum",
  "const",
  "anyOf",
  "$defs",
  "definitions",
  "$ref",
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Throws UnsupportedSchemaError for the first keyword outside the subset. */
export function checkSchemaSubset(schema: unknown, path = ""): void {
  if (typeof schema === "boolean") return;
  const fail = (keyword: string, why: string): never => {
    throw new UnsupportedSchemaError(keyword, path, `${why} (at ${path === "" ? "the root" : path}).`);
  };
  if (!isObject(schema)) return fail(String(schema), "a schema must be an object or a boolean");
  for (const [key, value] of Object.entries(schema)) {
    if (!KEYWORDS.has(key)) fail(key, `the keyword '${key}' is not supported in structured outputs`);
    const at = `${path}/${key}`;
    switch (key) {
      case "type": {
        const types = Array.isArray(value) ? value : [value];
        for (const t of types) if (typeof t !== "string" || !TYPES.has(t)) fail(String(t), `the type ${JSON.stringify(t)} is not supported`);
        break;
      }
      case "properties":
      case "$defs":
      case "definitions":
        if (!isObject(value)) fail(key, `'${key}' must be an object`);
        for (const [name, sub] of Object.entries(value as Record<string, unknown>)) checkSchemaSubset(sub, `${at}/${name}`);
        break;
      case "items":
      case "additionalProperties":
        checkSchemaSubset(value, at);
        break;
      case "anyOf":
        if (!Array.isArray(value) || value.length === 0) fail(key, "'anyOf' must be a non-empty array");
        (value as unknown[]).forEach((sub, i) => checkSchemaSubset(sub, `${at}/${i}`));
        break;
      case "required":
        if (!Array.isArray(value) || !value.every((x) => typeof x === "string")) fail(key, "'required' must be an array of property names");
        break;
      case "enum":
        if (!Array.isArray(value) || value.length === 0) fail(key, "'enum' must be a non-empty array");
        break;
      case "$ref":
        if (typeof value !== "string" || !/^#(\/(\$defs|definitions)\/[^/]+)?$/.test(value))
          fail(key, `only local references ("#", "#/$defs/name") are supported, not ${JSON.stringify(value)}`);
        break;
    }
  }
}

/**
 * A copy of `schema` without the keywords outside the subset (for tools that are not
 * `strict`: OpenAI follows their schemas on a best-effort basis too, so a forced call keeps
 * the structure and drops only refinements such as minimum or format).
 */
export function relaxSchema(schema: unknown): unknown {
  if (typeof schema === "boolean") return schema;
  if (!isObject(schema)) return {};
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (!KEYWORDS.has(key) || ANNOTATIONS.has(key)) continue;
    switch (key) {
      case "properties":
      case "$defs":
      case "definitions":
        if (isObject(value)) out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, relaxSchema(v)]));
        break;
      case "items":
      case "additionalProperties":
        out[key] = relaxSchema(value);
        break;
      case "anyOf":
        if (Array.isArray(value) && value.length > 0) out[key] = value.map(relaxSchema);
        break;
      case "type": {
        const types = (Array.isArray(value) ? value : [value]).filter((t) => typeof t === "string" && TYPES.has(t));
        if (types.length > 0) out[key] = Array.isArray(value) ? types : types[0];
        break;
      }
      case "$ref":
        if (typeof value === "string" && /^#(\/(\$defs|definitions)\/[^/]+)?$/.test(value)) out[key] = value;
        break;
      default:
        out[key] = value;
    }
  }
  return out;
}
