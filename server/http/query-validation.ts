// Query strings are text: `?limit=5` is the string "5". The app's validator never coerces
// (a JSON body's "5" is not 5), so GET routes with typed query parameters use this
// compiler instead, which coerces query and path values only.
import { Ajv, type ValidateFunction } from "ajv";
import type { FastifySchema, FastifySchemaCompiler } from "fastify";

const ajv = new Ajv({ coerceTypes: true, allErrors: true, useDefaults: false, removeAdditional: false, strict: false });

const cache = new WeakMap<object, ValidateFunction>();

/** For the `validatorCompiler` route option of routes whose schema has querystring/params only. */
export const queryValidatorCompiler: FastifySchemaCompiler<FastifySchema> = ({ schema, httpPart }) => {
  if (httpPart !== "querystring" && httpPart !== "params")
    throw new Error(`queryValidatorCompiler validates query strings and path params, not ${String(httpPart)}`);
  let fn = cache.get(schema);
  if (!fn) {
    fn = ajv.compile(schema);
    cache.set(schema, fn);
  }
  return fn;
};
