// POST /v1/files (multipart: file + purpose "fine-tune"; every JSONL line checked, bad
// ones named), GET /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content,
// DELETE /v1/files/{id}.
import multipart from "@fastify/multipart";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors } from "../errors.js";
import type { FineTuning } from "../../fine-tuning/fine-tuning.js";
import { fileBody, type FileBody } from "../../fine-tuning/shapes.js";
import { TrainingFileError, validateTrainingFile } from "../../fine-tuning/training-files.js";
import { listPage } from "../list-pages.js";
import { nowSeconds } from "../openai-shapes.js";
import { queryValidatorCompiler } from "../query-validation.js";
import { ListFilesQuerySchema } from "../schemas/fine-tuning.js";
import { IdParamsSchema } from "../schemas/store-queries.js";
import type { ListPageBody } from "../schemas/store-responses.js";
import { fileId, UnknownFileError, type FileRecord } from "../../store/files.js";

export interface FineTuningRouteOptions {
  /** null: the server keeps no store (--no-store), so it has no files or jobs */
  fineTuning: FineTuning | null;
}

/** largest upload accepted */
export const MAX_FILE_BYTES = 512 * 1024 * 1024;
const PURPOSES = ["fine-tune"];

export function requireFineTuning(ft: FineTuning | null): FineTuning {
  if (ft === null) throw errors.storeDisabled();
  return ft;
}

function utf8(bytes: Buffer): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw errors.invalidFile("The file is not UTF-8 text; upload JSONL.", "file");
  }
}

export const filesRoutes: FastifyPluginAsyncTypebox<FineTuningRouteOptions> = async (app, opts) => {
  await app.register(multipart, { limits: { fileSize: MAX_FILE_BYTES, files: 1, fields: 8, parts: 10 }, throwFileSizeLimit: true });

  const getFile = (ft: FineTuning, id: string): FileRecord => {
    const f = ft.store.files.get(id);
    if (!f) throw errors.fileNotFound(id, "file_id");
    return f;
  };

  app.post("/v1/files", async (request): Promise<FileBody> => {
    const ft = requireFineTuning(opts.fineTuning);
    if (!request.isMultipart())
      throw errors.invalidRequest("Upload the file as multipart/form-data with the fields 'file' and 'purpose'.", null, "invalid_content_type");
    let purpose: string | null = null;
    let file: { name: string; bytes: Buffer } | null = null;
    for await (const part of request.parts()) {
      if (part.type === "file") {
        const bytes = await part.toBuffer();
        if (part.fieldname !== "file") throw errors.invalidRequest(`Unexpected file field '${part.fieldname}'; send the file as 'file'.`, part.fieldname);
        file = { name: part.filename, bytes };
      } else if (part.fieldname === "purpose") purpose = String(part.value);
    }
    if (file === null) throw errors.invalidRequest("Missing the 'file' field.", "file", "missing_required_parameter");
    if (purpose === null) throw errors.invalidRequest("Missing the 'purpose' field.", "purpose", "missing_required_parameter");
    if (!PURPOSES.includes(purpose)) throw errors.invalidRequest(`purpose '${purpose}' is not supported; this server accepts ${PURPOSES.map((p) => `'${p}'`).join(", ")}.`, "purpose");
    let checked: ReturnType<typeof validateTrainingFile>;
    try {
      checked = validateTrainingFile(utf8(file.bytes));
    } catch (e) {
      if (e instanceof TrainingFileError) throw errors.invalidFile(e.message, "file");
      throw e;
    }
    const record: FileRecord = {
      id: fileId(),
      filename: file.name,
      purpose,
      bytes: file.bytes.length,
      createdAt: nowSeconds(),
      format: checked.format,
      examples: checked.examples,
      owner: request.apiKeyId,
    };
    // bytes first: a crash in between leaves an unlisted file, never a listed one without bytes
    ft.files.write(record.id, file.bytes);
    return fileBody(ft.store.files.insert(record));
  });

  app.get(
    "/v1/files",
    { schema: { querystring: ListFilesQuerySchema }, validatorCompiler: queryValidatorCompiler },
    async (request): Promise<ListPageBody<FileBody>> => {
      const ft = requireFineTuning(opts.fineTuning);
      const q = request.query;
      try {
        const page = ft.store.files.list({ purpose: q.purpose, after: q.after, limit: q.limit ?? 10000, order: q.order ?? "desc" });
        return listPage({ items: page.items.map(fileBody), hasMore: page.hasMore });
      } catch (e) {
        if (e instanceof UnknownFileError) throw errors.fileNotFound(e.id, "after");
        throw e;
      }
    },
  );

  app.get("/v1/files/:id", { schema: { params: IdParamsSchema }, validatorCompiler: queryValidatorCompiler }, async (request): Promise<FileBody> => {
    return fileBody(getFile(requireFineTuning(opts.fineTuning), request.params.id));
  });

  app.get("/v1/files/:id/content", { schema: { params: IdParamsSchema }, validatorCompiler: queryValidatorCompiler }, async (request, reply) => {
    const ft = requireFineTuning(opts.fineTuning);
    const f = getFile(ft, request.params.id);
    return reply.type("application/jsonl; charset=utf-8").send(ft.files.read(f.id));
  });

  app.delete("/v1/files/:id", { schema: { params: IdParamsSchema }, validatorCompiler: queryValidatorCompiler }, async (request) => {
    const ft = requireFineTuning(opts.fineTuning);
    const f = getFile(ft, request.params.id);
    ft.store.files.delete(f.id);
    ft.files.remove(f.id);
    return { id: f.id, object: "file", deleted: true };
  });
};
