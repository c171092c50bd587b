// Model versions: what /v1/models lists (the base id and one id per published version or
// adapter), promotion (POST /v1/models/{id}/promote, a hybridchat extension) and roll back.
import type OpenAI from "openai";
import type { ModelBody } from "../server/http/schemas/responses.js";

export type { ModelBody };

export interface VersionList {
  /** the id clients send to get "the" model */
  base: string;
  /** what the base id serves now: itself or a promoted version */
  serves: string;
  /** every other served id, oldest first */
  versions: ModelBody[];
}

export class VersionsResource {
  constructor(private readonly client: OpenAI) {}

  async list(): Promise<VersionList> {
    const models = (await this.client.get<{ data: ModelBody[] }>("/models")).data;
    const base = models.find((m) => m.parent === null && m.serves !== undefined);
    if (!base) throw new Error("the server lists no base model (is it a hybridchat server?)");
    const versions = models.filter((m) => m !== base).sort((a, b) => a.created - b.created || a.id.localeCompare(b.id));
    return { base: base.id, serves: base.serves!, versions };
  }

  /** The base id serves `modelId` from now on; promoting the base id itself restores its own weights. */
  promote(modelId: string): Promise<ModelBody> {
    return this.client.post<ModelBody>(`/models/${encodeURIComponent(modelId)}/promote`);
  }

  /**
   * Promotes the version before the one the base id serves now (by creation time), or the
   * base's own weights when the first version is served. Throws when nothing is promoted.
   */
  async rollback(): Promise<ModelBody> {
    const { base, serves, versions } = await this.list();
    if (serves === base) throw new Error(`${base} serves its own weights: there is nothing to roll back`);
    const i = versions.findIndex((v) => v.id === serves);
    return this.promote(i > 0 ? versions[i - 1]!.id : base);
  }
}
