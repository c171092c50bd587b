// response_format -> the grammar the output must follow, compiled for the served model, with
// a schema the engine cannot take turned into a 400 that names the parameter and keyword.
import type { GrammarSpec } from "../../engine/grammar/grammars.js";
import { UnsupportedSchemaError } from "../../engine/grammar/schema-subset.js";
import { errors } from "../http/errors.js";
import type { ResponseFormat } from "../http/schemas/tools.js";
import type { ConstraintFactory, ServedModel } from "./serving.js";

/** The grammar of a response_format (null: free text). */
export function responseFormatGrammar(rf: ResponseFormat | null | undefined): GrammarSpec | null {
  if (!rf || rf.type === "text") return null;
  if (rf.type === "json_object") return { kind: "json_object" };
  const schema = rf.json_schema.schema;
  return schema == null ? { kind: "json_object" } : { kind: "json_schema", schema };
}

/** Compiles `spec`; a schema it cannot take is a 400 naming `param` (and the keyword). */
export async function compileGrammar(model: ServedModel, spec: GrammarSpec, param: string): Promise<ConstraintFactory> {
  try {
    return await model.grammar(spec);
  } catch (e) {
    if (e instanceof UnsupportedSchemaError)
      throw errors.invalidRequest(`Invalid schema for '${param}': ${e.message}`, param, "invalid_value");
    // xgrammar's own refusals (a $ref to nowhere, a schema it cannot compile)
    throw errors.invalidRequest(`Invalid schema for '${param}': ${(e as Error)?.message ?? String(e)}`, param, "invalid_value");
  }
}
