// Response bodies of the stored-completions and feedback routes (types only).
import type { ToolCallInput } from "./tools.js";
import type { PromptMessage } from "../../store/types.js";
import type { ChatMessageInput } from "./chat.js";

/** OpenAI's cursor page */
export interface ListPageBody<T> {
  object: "list";
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

/** a request message of a stored chat completion (GET .../{id}/messages) */
export interface StoredMessageBody {
  id: string;
  role: ChatMessageInput["role"];
  content: string;
  name: string | null;
  /** the parts as sent, when the content was an array */
  content_parts: { type: "text"; text: string }[] | null;
  /** assistant turns: the tool calls as sent */
  tool_calls?: ToolCallInput[];
  /** tool turns: the call answered */
  tool_call_id?: string;
}

interface FeedbackHead {
  id: string;
  object: "feedback";
  created: number;
  /** the model that produced the judged (or chosen) answer; null for text preferences */
  model: string | null;
  /** rating: of a served answer; pairwise: a choice between two served answers; text: a preference the sender wrote */
  source: "rating" | "pairwise" | "text";
  /** only approved feedback trains; a user key's text preference is pending until an admin reviews it */
  status: "pending" | "approved" | "rejected";
  /** the key id that sent it (null: no keys, or stored before keys had ids) */
  owner: string | null;
}

export type FeedbackBody =
  | (FeedbackHead & { type: "rating"; completion_id: string; choice_index: number; rating: 1 | -1; comment: string | null })
  | (FeedbackHead & { type: "correction"; completion_id: string; choice_index: number; correction: string })
  | (FeedbackHead & {
      type: "preference";
      chosen_id: string | null;
      chosen_index: number | null;
      rejected_id: string | null;
      rejected_index: number | null;
      /** text preferences only: what was given */
      prompt?: PromptMessage[];
      chosen?: string;
      rejected?: string;
    });
