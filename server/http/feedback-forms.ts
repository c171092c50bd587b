// A validated POST /v1/feedback body -> the feedback to store: which form it is, the
// stored completions it names (404 naming the parameter), and the checks only the data
// can answer (the choice exists, a preference compares answers to the same prompt).
import { toChatMessage } from "../serving/chat-messages.js";
import { ApiError, errors } from "./errors.js";
import type { FeedbackRequest } from "./schemas/feedback.js";
import type { FeedbackBody } from "./schemas/store-responses.js";
import { promptKey } from "../store/completions.js";
import type { FeedbackRecord, FeedbackType, NewFeedback } from "../store/feedback.js";
import { choiceToolCalls, offeredTools } from "../store/export.js";
import type { Store } from "../store/store.js";
import type { CompletionRecord, OwnedBy, Owner, PromptMessage } from "../store/types.js";

type Field = keyof FeedbackRequest;

interface Form {
  type: FeedbackType;
  /** what the form is called in errors */
  name: string;
  required: Field[];
  optional: Field[];
}

// the first form whose marker field is present is the body's form
const FORMS: { marker: Field[]; form: Form }[] = [
  { marker: ["rating"], form: { type: "rating", name: "a rating", required: ["completion_id", "rating"], optional: ["choice_index", "comment"] } },
  { marker: ["correction"], form: { type: "correction", name: "a correction", required: ["completion_id", "correction"], optional: ["choice_index"] } },
  {
    marker: ["prompt", "chosen", "rejected"],
    form: { type: "preference", name: "a preference given as text", required: ["prompt", "chosen", "rejected"], optional: [] },
  },
  {
    marker: ["chosen_id", "rejected_id"],
    form: { type: "preference", name: "a preference between two completions", required: ["chosen_id", "rejected_id"], optional: ["chosen_index", "rejected_index"] },
  },
  {
    marker: ["chosen_index", "rejected_index"],
    form: { type: "preference", name: "a preference between two choices of one completion", required: ["completion_id", "chosen_index", "rejected_index"], optional: [] },
  },
];

const present = (body: FeedbackRequest, f: Field): boolean => body[f] !== undefined && body[f] !== null;

function formOf(body: FeedbackRequest): Form {
  const hit = FORMS.find((f) => f.marker.some((m) => present(body, m)));
  if (!hit)
    throw errors.invalidRequest(
      "Say what the feedback is: a rating {completion_id, rating}, a correction {completion_id, correction}, " +
        "or a preference {chosen_id, rejected_id}, {completion_id, chosen_index, rejected_index} or {prompt, chosen, rejected}.",
      null,
      "missing_required_parameter",
    );
  const { form } = hit;
  for (const f of form.required)
    if (!present(body, f)) throw errors.invalidRequest(`Missing required parameter: '${f}' (for ${form.name}).`, f, "missing_required_parameter");
  const allowed = new Set<Field>(["type", ...form.required, ...form.optional]);
  const stray = (Object.keys(body) as Field[]).find((f) => !allowed.has(f) && present(body, f));
  if (stray !== undefined) throw errors.invalidRequest(`'${stray}' does not belong in ${form.name}.`, stray, "conflicting_parameters");
  if (body.type !== undefined && body.type !== form.type)
    throw errors.invalidRequest(`'type' is '${body.type}', but the fields given make ${form.name}.`, "type");
  return form;
}

/** A stored chat completion the sender may see, or 404 naming `param` (another key's is not there). */
function chatCompletion(store: Store, id: string, param: string, sees: OwnedBy): CompletionRecord & { promptMessages: PromptMessage[] } {
  const c = store.completions.get(id, sees);
  if (!c) throw errors.completionNotFound(id, param);
  if (c.promptMessages === null)
    throw errors.invalidRequest(`Feedback applies to chat completions; '${id}' is a text completion.`, param, "unsupported_completion");
  return c as CompletionRecord & { promptMessages: PromptMessage[] };
}

function choiceText(c: CompletionRecord, index: number, param: string): string {
  const ch = c.choices.find((x) => x.index === index);
  if (!ch)
    throw errors.invalidRequest(
      `Completion '${c.id}' has ${c.choices.length} choice(s); '${param}' must be below ${c.choices.length}.`,
      param,
    );
  return ch.text;
}

const differentPrompts = (chosen: string, rejected: string): ApiError =>
  errors.invalidRequest(
    `A preference compares answers to the same prompt, but '${chosen}' and '${rejected}' answer different messages.`,
    "rejected_id",
    "different_prompts",
  );

/** Who sends the feedback: the key id it is stored under, the completions it may judge, and whether its own text is trusted to train. */
export interface FeedbackSender {
  owner: Owner;
  sees: OwnedBy;
  /** an admin key, or a server without keys: free-text preferences are approved at once; else they wait (pending) */
  trusted: boolean;
}

export function resolveFeedback(store: Store, body: FeedbackRequest, sender: FeedbackSender): NewFeedback {
  const { owner, sees } = sender;
  // judgements of the server's own answers need no review; text the sender wrote does
  const status = "approved" as const;
  const form = formOf(body);
  if (form.type === "rating" || form.type === "correction") {
    const c = chatCompletion(store, body.completion_id!, "completion_id", sees);
    const choiceIndex = body.choice_index ?? 0;
    const answer = choiceText(c, choiceIndex, "choice_index");
    const common = { completionId: c.id, choiceIndex, answer, model: c.model, promptMessages: c.promptMessages, owner, status };
    return form.type === "rating"
      ? { type: "rating", ...common, rating: body.rating!, comment: body.comment ?? null }
      : { type: "correction", ...common, correction: body.correction! };
  }
  if (body.prompt !== undefined) {
    const promptMessages = typeof body.prompt === "string" ? [{ role: "user" as const, content: body.prompt }] : body.prompt.map(toChatMessage);
    return {
      type: "preference",
      promptMessages,
      chosenId: null,
      chosenIndex: null,
      rejectedId: null,
      rejectedIndex: null,
      chosen: body.chosen!,
      rejected: body.rejected!,
      model: null,
      rejectedModel: null,
      owner,
      status: sender.trusted ? "approved" : "pending",
      tools: null,
      parallelToolCalls: null,
      chosenToolCalls: null,
      rejectedToolCalls: null,
    };
  }
  // by ids (index 0 unless given), or two choices of one completion (n >= 2)
  const oneCompletion = body.completion_id !== undefined;
  const chosenParam = oneCompletion ? "completion_id" : "chosen_id";
  const chosen = chatCompletion(store, oneCompletion ? body.completion_id! : body.chosen_id!, chosenParam, sees);
  const rejected = oneCompletion ? chosen : chatCompletion(store, body.rejected_id!, "rejected_id", sees);
  const chosenIndex = body.chosen_index ?? 0;
  const rejectedIndex = body.rejected_index ?? 0;
  if (chosen.id === rejected.id && chosenIndex === rejectedIndex)
    throw errors.invalidRequest("'chosen' and 'rejected' name the same answer; a preference needs two different answers.", "rejected_index");
  if (promptKey(chosen.promptMessages) !== promptKey(rejected.promptMessages)) throw differentPrompts(chosen.id, rejected.id);
  // the tools offered are part of the prompt: answers to different tool sets are not comparable
  const tools = offeredTools(chosen);
  if (JSON.stringify(tools) !== JSON.stringify(offeredTools(rejected))) throw differentPrompts(chosen.id, rejected.id);
  const parallel = chosen.request.parallel_tool_calls;
  return {
    type: "preference",
    promptMessages: chosen.promptMessages,
    chosenId: chosen.id,
    chosenIndex,
    rejectedId: rejected.id,
    rejectedIndex,
    chosen: choiceText(chosen, chosenIndex, "chosen_index"),
    rejected: choiceText(rejected, rejectedIndex, "rejected_index"),
    model: chosen.model,
    rejectedModel: rejected.model,
    owner,
    status,
    tools,
    parallelToolCalls: tools !== null && typeof parallel === "boolean" ? parallel : null,
    chosenToolCalls: choiceToolCalls(chosen, chosenIndex),
    rejectedToolCalls: choiceToolCalls(rejected, rejectedIndex),
  };
}


/** The API object of a stored piece of feedback. */
export function feedbackBody(f: FeedbackRecord): FeedbackBody {
  const head = { id: f.id, object: "feedback" as const, created: f.created, model: f.model, source: f.source, status: f.status, owner: f.owner };
  switch (f.type) {
    case "rating":
      return { ...head, type: "rating", completion_id: f.completionId, choice_index: f.choiceIndex, rating: f.rating, comment: f.comment };
    case "correction":
      return { ...head, type: "correction", completion_id: f.completionId, choice_index: f.choiceIndex, correction: f.correction };
    case "preference": {
      const body: FeedbackBody = {
        ...head,
        type: "preference",
        chosen_id: f.chosenId,
        chosen_index: f.chosenIndex,
        rejected_id: f.rejectedId,
        rejected_index: f.rejectedIndex,
      };
      if (f.chosenId === null) Object.assign(body, { prompt: f.promptMessages, chosen: f.chosen, rejected: f.rejected });
      return body;
    }
  }
}
