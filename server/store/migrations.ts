// The schema, as an ordered list of migrations. A database records the versions it has
// applied (schema_migrations) and gets the rest at open. Never edit a migration that has
// shipped: append a new one (files, jobs, versions will come as 2, 3, ...).

export interface Migration {
  /** 1, 2, 3... in list order */
  version: number;
  name: string;
  /** SQL run in one transaction with the version's record */
  up: string;
}

const completionsAndFeedback = /* sql */ `
-- every completion a client got, exactly as it got it (OpenAI 'store' semantics)
CREATE TABLE completions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: list order and cursors
  id TEXT NOT NULL UNIQUE,                -- chatcmpl-... / cmpl-...
  object TEXT NOT NULL CHECK (object IN ('chat.completion', 'text_completion')),
  created INTEGER NOT NULL,               -- unix seconds, as in the response
  model TEXT NOT NULL,                    -- the served model id (variant) that answered
  adapter TEXT,                           -- its native adapter; NULL = the base weights
  system_fingerprint TEXT NOT NULL,
  request TEXT NOT NULL,                  -- the validated request body (JSON)
  prompt_messages TEXT,                   -- chat: the conversation, normalized (JSON)
  prompt_key TEXT,                        -- hash of prompt_messages: "the same prompt"
  response TEXT NOT NULL,                 -- the response object as returned (JSON)
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  queued_ms REAL NOT NULL,                -- submit -> first scheduled (slowest choice)
  ttft_ms REAL NOT NULL,                  -- submit -> first token (fastest choice)
  total_ms REAL NOT NULL,                 -- request handler start -> stored
  streamed INTEGER NOT NULL CHECK (streamed IN (0, 1)),
  metadata TEXT NOT NULL                  -- the request's metadata (JSON object)
);
CREATE INDEX completions_by_object ON completions (object, seq);
CREATE INDEX completions_by_model ON completions (model, seq);
CREATE INDEX completions_by_created ON completions (created);

CREATE TABLE completion_choices (
  completion_id TEXT NOT NULL REFERENCES completions (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  text TEXT NOT NULL,
  finish_reason TEXT NOT NULL,
  PRIMARY KEY (completion_id, idx)
) WITHOUT ROWID;

-- metadata[k]=v filters use this index; completions.metadata keeps the object as sent
CREATE TABLE completion_metadata (
  completion_id TEXT NOT NULL REFERENCES completions (id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (completion_id, key)
) WITHOUT ROWID;
CREATE INDEX completion_metadata_by_pair ON completion_metadata (key, value);

-- what people said about the answers; each row is self-contained for export
-- (the prompt and texts are copied, so a text preference needs no completion)
CREATE TABLE feedback (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,                -- fb_...
  type TEXT NOT NULL CHECK (type IN ('rating', 'preference', 'correction')),
  created INTEGER NOT NULL,               -- unix seconds
  completion_id TEXT REFERENCES completions (id),  -- rating, correction
  choice_index INTEGER,
  rating INTEGER CHECK (rating IN (1, -1)),
  comment TEXT,
  correction TEXT,
  chosen_id TEXT REFERENCES completions (id),      -- preference between stored answers
  chosen_index INTEGER,
  rejected_id TEXT REFERENCES completions (id),
  rejected_index INTEGER,
  prompt_messages TEXT NOT NULL,          -- the conversation the answers continue (JSON)
  answer TEXT,                            -- rating/correction: the answer judged
  chosen TEXT,                            -- preference texts
  rejected TEXT,
  model TEXT,                             -- model of the judged (or chosen) answer
  rejected_model TEXT,                    -- preference: model of the rejected answer
  CHECK (type <> 'rating' OR (rating IS NOT NULL AND answer IS NOT NULL)),
  CHECK (type <> 'correction' OR (correction IS NOT NULL AND answer IS NOT NULL)),
  CHECK (type <> 'preference' OR (chosen IS NOT NULL AND rejected IS NOT NULL))
);
CREATE INDEX feedback_by_created ON feedback (created);
CREATE INDEX feedback_by_completion ON feedback (completion_id);
CREATE INDEX feedback_by_chosen ON feedback (chosen_id);
CREATE INDEX feedback_by_rejected ON feedback (rejected_id);

-- Idempotency-Key: the first response to a key, replayed to retries with the same body
CREATE TABLE idempotency_keys (
  scope TEXT NOT NULL,                    -- the route ("POST /v1/feedback")
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  response TEXT NOT NULL,                 -- JSON
  created INTEGER NOT NULL,               -- unix ms
  PRIMARY KEY (scope, key)
) WITHOUT ROWID;
`;

export const MIGRATIONS: readonly Migration[] = [{ version: 1, name: "completions and feedback", up: completionsAndFeedback }];
