// POST /tokenize and POST /detokenize (vLLM's): the served model's tokenizer and chat
// template, so clients can count tokens exactly as a completion will.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors } from "../errors.js";
import { requireServing, type RouteOptions } from "../request-context.js";
import { DetokenizeRequestSchema, TokenizeRequestSchema } from "../schemas/tokenize.js";
import { chatPrompt } from "../../serving/tools/tool-prompt.js";

export const tokenizeRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.post("/tokenize", { config: { access: "user" }, schema: { body: TokenizeRequestSchema } }, async (request) => {
    const body = request.body;
    const { serving } = requireServing(opts.slot, body.model);
    const model = serving.model;
    let tokens: number[];
    if ("prompt" in body) {
      tokens = body.add_special_tokens === false ? model.encodeContinuation(body.prompt) : model.encodePrompt(body.prompt);
    } else {
      // as a chat completion would render them (tools included)
      const prompt = chatPrompt({ messages: body.messages, tools: body.tools ?? null }, model.chatTemplate);
      try {
        tokens = model.encodeChat(prompt.messages, prompt.tools, body.add_generation_prompt ?? true);
      } catch (e) {
        throw errors.invalidRequest(`The model's chat template rejected these messages: ${(e as Error).message}`, "messages");
      }
      // the template writes BOS itself; asked for, the tokenizer's own specials go in front as well
      if (body.add_special_tokens === true) tokens = [...model.encodePrompt(""), ...tokens];
    }
    return {
      count: tokens.length,
      max_model_len: model.maxContext,
      tokens,
      ...(body.return_token_strs ? { token_strs: tokens.map((t) => model.tokenText(t)) } : {}),
    };
  });

  app.post("/detokenize", { config: { access: "user" }, schema: { body: DetokenizeRequestSchema } }, async (request) => {
    const body = request.body;
    const { serving } = requireServing(opts.slot, body.model);
    const bad = body.tokens.findIndex((t) => t >= serving.model.vocabSize);
    if (bad >= 0)
      throw errors.invalidRequest(`Token id ${body.tokens[bad]} is out of range (the vocabulary has ${serving.model.vocabSize} tokens).`, `tokens[${bad}]`);
    // special tokens kept, as vLLM decodes
    return { prompt: serving.model.decode(body.tokens, false) };
  });
};
