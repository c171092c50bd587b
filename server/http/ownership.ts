// Whose stored rows a request may see. Every completion, feedback row, file and job records
// the key id that stored it (its owner); a user key sees only its own, an admin key (or
// anyone, on a server without keys) sees all. Another key's row answers 404 like a missing
// one, as OpenAI answers for ids a key cannot see: a 403 would confirm that it exists.
import type { FastifyRequest } from "fastify";
import type { OwnedBy } from "../store/types.js";

/** The rows `request` may read: undefined, all of them; else its key id's. */
export function ownedBy(request: FastifyRequest): OwnedBy {
  if (request.apiKeyRole !== "user") return undefined;
  // fail closed: a user without a key id must not read as "everyone's"
  if (request.apiKeyId === null) throw new Error("a user-role request without an API key id");
  return request.apiKeyId;
}
