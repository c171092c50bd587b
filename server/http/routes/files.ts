// POST /v1/files (multipart: file + purpose "fine-tune"; streamed to disk under the stated
// limits, every JSONL line checked off the event loop, bad ones named), GET /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content,
// DELETE /v1/files/{id}.
import { rm } from "node:fs/promises";
import multipart from "@fastify/multipart";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors } from "../errors.js";
import type { FineTuning } from "../../fine-tuning/fine-tuning.js";
import { fileBody, type FileBody } from "../../fine-tuning/shapes.js";
import { TrainingFileError, type CheckedFile } from "../../fine-tuning/training-lines.js";
import { DEFAULT_FILE_LIMITS, MULTIPART_SLACK_BYTES, receiveUpload } from "../../fine-tuning/uploads.js";
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

const PURPOSES = ["fine-tune"];

export function requireFineTuning(ft: FineTuning | null): FineTuning {
  if (ft === null) throw errors.storeDisabled();
  return ft;
}

/** what busboy reports when a file passes its own size limit (a backstop: LimitCheck refuses first) */
const isBusboySizeLimit = (e: unknown): boolean => (e as { code?: unknown })?.code === "FST_REQ_FILE_TOO_LARGE";

export const filesRoutes: FastifyPluginAsyncTypebox<FineTuningRouteOptions> = async (app, opts) => {
  const limits = opts.fineTuning?.limits ?? DEFAULT_FILE_LIMITS;
  await app.register(multipart, { limits: { fileSize: limits.maxBytes + 1, files: 1, fields: 8, parts: 10 }, throwFileSizeLimit: true });

  const getFile = (ft: FineTuning, id: string): FileRecord => {
    const f = ft.store.files.get(id);
    if (!f) throw errors.fileNotFound(id, "file_id");
    return f;
  };

  // the bytes go to disk as they arrive (uploads.ts), are checked there on a worker thread,
  // and only then become a file: its row is written after its bytes are safe
  app.post("/v1/files", async (request): Promise<FileBody> => {
    const ft = requireFineTuning(opts.fineTuning);
    if (!request.isMultipart())
      throw errors.invalidRequest("Upload the file as multipart/form-data with the fields 'file' and 'purpose'.", null, "invalid_content_type");
    // a body that cannot fit is refused before a byte of it is read
    const declared = Number(request.headers["content-length"] ?? NaN);
    if (declared > limits.maxBytes + MULTIPART_SLACK_BYTES) throw errors.fileTooLarge(limits.maxBytes);
    let purpose: string | null = null;
    let file: { name: string; tmp: string; bytes: number } | null = null;
    try {
      try {
        for await (const part of request.parts()) {
          if (part.type === "file") {
            if (part.fieldname !== "file") {
              part.file.resume();
              throw errors.invalidRequest(`Unexpected file field '${part.fieldname}'; send the file as 'file'.`, part.fieldname);
            }
            const got = await receiveUpload(part.file, ft.files.dir, limits);
            file = { name: part.filename, tmp: got.path, bytes: got.bytes };
          } else if (part.fieldname === "purpose") purpose = String(part.value);
        }
      } catch (e) {
        if (isBusboySizeLimit(e)) throw errors.fileTooLarge(limits.maxBytes);
        throw e;
      }
      if (file === null) throw errors.invalidRequest("Missing the 'file' field.", "file", "missing_required_parameter");
      if (purpose === null) throw errors.invalidRequest("Missing the 'purpose' field.", "purpose", "missing_required_parameter");
      if (!PURPOSES.includes(purpose)) throw errors.invalidRequest(`purpose '${purpose}' is not supported; this server accepts ${PURPOSES.map((p) => `'${p}'`).join(", ")}.`, "purpose");
      let checked: CheckedFile;
      try {
        checked = await ft.check.check(file.tmp);
      } catch (e) {
        if (e instanceof TrainingFileError) throw errors.invalidFile(e.message, "file");
        throw e;
      }
      const record: FileRecord = {
        id: fileId(),
        filename: file.name,
        purpose,
        bytes: file.bytes,
        createdAt: nowSeconds(),
        format: checked.format,
        examples: checked.examples,
        owner: request.apiKeyId,
      };
      // bytes first: a crash in between leaves bytes no row names (never listed or served),
      // never a listed file without its bytes
      await ft.files.keep(file.tmp, record.id);
      file = null;
      return fileBody(ft.store.files.insert(record));
    } finally {
      if (file !== null) await rm(file.tmp, { force: true });
    }
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
    return reply.type("application/jsonl; charset=utf-8").send(ft.files.stream(f.id));
  });

  app.delete("/v1/files/:id", { schema: { params: IdParamsSchema }, validatorCompiler: queryValidatorCompiler }, async (request) => {
    const ft = requireFineTuning(opts.fineTuning);
    const f = getFile(ft, request.params.id);
    ft.store.files.delete(f.id);
    ft.files.remove(f.id);
    return { id: f.id, object: "file", deleted: true };
  });
};
