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

const filesJobsVersions = /* sql */ `
-- uploaded files (OpenAI's File objects); the bytes live in <data-dir>/files/<id>.jsonl
CREATE TABLE files (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,                -- file-...
  filename TEXT NOT NULL,
  purpose TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,            -- unix seconds
  format TEXT NOT NULL CHECK (format IN ('sft', 'dpo')),  -- which training lines it holds
  examples INTEGER NOT NULL
);

-- fine-tuning jobs; status moves validating_files -> queued -> running -> a final state
CREATE TABLE fine_tuning_jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,                -- ftjob-...
  created_at INTEGER NOT NULL,
  model TEXT NOT NULL,                    -- the served base id trained on
  training_file TEXT NOT NULL,            -- a file id, or 'feedback'
  validation_file TEXT,
  feedback_filter TEXT,                   -- training_file 'feedback': the export filter (JSON)
  suffix TEXT,
  seed INTEGER NOT NULL,
  method TEXT NOT NULL,                   -- the request's method object (JSON), 'auto' resolved once running
  status TEXT NOT NULL CHECK (status IN ('validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled')),
  error TEXT,                             -- {code, message, param} (JSON) when failed
  started_at INTEGER,
  finished_at INTEGER,
  fine_tuned_model TEXT,
  trained_tokens INTEGER,
  result_files TEXT NOT NULL DEFAULT '[]' -- JSON array of file ids
);
CREATE INDEX fine_tuning_jobs_by_status ON fine_tuning_jobs (status);

CREATE TABLE fine_tuning_job_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,                -- ftevent-...
  job_id TEXT NOT NULL REFERENCES fine_tuning_jobs (id),
  created_at INTEGER NOT NULL,
  level TEXT NOT NULL CHECK (level IN ('info', 'warn', 'error')),
  message TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('message', 'metrics')),
  data TEXT                               -- JSON
);
CREATE INDEX fine_tuning_job_events_by_job ON fine_tuning_job_events (job_id, seq);

CREATE TABLE fine_tuning_checkpoints (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,                -- ftckpt-...
  job_id TEXT NOT NULL REFERENCES fine_tuning_jobs (id),
  created_at INTEGER NOT NULL,
  step_number INTEGER NOT NULL,
  metrics TEXT NOT NULL,                  -- JSON
  fine_tuned_model_checkpoint TEXT NOT NULL,
  dir TEXT NOT NULL                       -- the PEFT adapter on disk
);
CREATE INDEX fine_tuning_checkpoints_by_job ON fine_tuning_checkpoints (job_id, seq);

-- published model versions: a job's adapter, served under its own model id
CREATE TABLE model_versions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,                -- ft:<base>:<suffix>:<job-id>
  base TEXT NOT NULL,
  job_id TEXT NOT NULL REFERENCES fine_tuning_jobs (id),
  dir TEXT NOT NULL,                      -- <data-dir>/versions/<job-id>, PEFT layout
  created_at INTEGER NOT NULL
);

-- what a base id serves when it is not the base weights: the promoted model id (a version,
-- or an adapter given at start; one no longer served at start-up is ignored)
CREATE TABLE model_aliases (
  alias TEXT PRIMARY KEY,
  target TEXT NOT NULL
) WITHOUT ROWID;
`;

// prompt files (ppo's training_file: {"prompt": "…"} lines): the files table rebuilt with
// the wider format check (SQLite cannot alter a CHECK; no foreign key points at files)
const promptFiles = /* sql */ `
CREATE TABLE files_v3 (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  filename TEXT NOT NULL,
  purpose TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  format TEXT NOT NULL CHECK (format IN ('sft', 'dpo', 'prompts')),
  examples INTEGER NOT NULL
);
INSERT INTO files_v3 (seq, id, filename, purpose, bytes, created_at, format, examples)
  SELECT seq, id, filename, purpose, bytes, created_at, format, examples FROM files;
DROP TABLE files;
ALTER TABLE files_v3 RENAME TO files;
`;

// API keys made by `hybridchat keys create`, next to the --api-key ones: what the server
// checks a request's key against (its SHA-256, never the key) and what the key may do
const apiKeysTable = /* sql */ `
CREATE TABLE api_keys (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,                -- key_<first 16 hex of the SHA-256>: apiKeyId(key), what rows and logs name
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
  key_sha256 BLOB NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
  created_at INTEGER NOT NULL,            -- unix ms
  revoked_at INTEGER,                     -- unix ms; NULL while the key works
  requests_per_minute INTEGER CHECK (requests_per_minute > 0), -- NULL: the server's --key-rate-limit
  tokens_per_minute INTEGER CHECK (tokens_per_minute > 0),     -- NULL: the server's --key-token-limit
  last_used_at INTEGER                    -- unix ms, to the minute (written at most once a minute)
);
-- a name picks one live key (revoke NAME); a revoked key's name may be reused
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
`;

// who created each row: the API key id (server/http/auth.ts apiKeyId, never the key) of the
// request that stored it. NULL: a server without keys, or a row from before this migration;
// such rows are the admins' (a user key never sees them).
const owners = /* sql */ `
ALTER TABLE completions ADD COLUMN owner TEXT;
CREATE INDEX completions_by_owner ON completions (owner, object, seq);
ALTER TABLE feedback ADD COLUMN owner TEXT;
CREATE INDEX feedback_by_owner ON feedback (owner, seq);
ALTER TABLE files ADD COLUMN owner TEXT;
ALTER TABLE fine_tuning_jobs ADD COLUMN owner TEXT;
`;

// where each piece of feedback came from, and whether it may train: a rating (or
// correction) of a served answer, a pairwise choice between two served answers, or a
// free-text {prompt, chosen, rejected} preference; free text from a user key waits for an
// admin's review (pending -> approved | rejected). Older rows are classed by their form
// and stay approved (they trained before, and had no owner, so an admin's).
const feedbackProvenance = /* sql */ `
ALTER TABLE feedback ADD COLUMN source TEXT NOT NULL DEFAULT 'rating' CHECK (source IN ('rating', 'pairwise', 'text'));
UPDATE feedback SET source = CASE WHEN type <> 'preference' THEN 'rating' WHEN chosen_id IS NOT NULL THEN 'pairwise' ELSE 'text' END;
ALTER TABLE feedback ADD COLUMN status TEXT NOT NULL DEFAULT 'approved' CHECK (status IN ('pending', 'approved', 'rejected'));
ALTER TABLE feedback ADD COLUMN reviewed_by TEXT;        -- the admin key id that approved or rejected it
ALTER TABLE feedback ADD COLUMN reviewed_at INTEGER;     -- unix seconds
CREATE INDEX feedback_by_status ON feedback (status, seq);
`;

// A preference between two tool-using answers is exported as OpenAI's preference line with
// tools: the row keeps (a self-contained copy, like its texts) the tools the prompt offered,
// its parallel_tool_calls, and each answer's tool calls (JSON; NULL: text answers).
const preferenceTools = /* sql */ `
ALTER TABLE feedback ADD COLUMN tools TEXT;
ALTER TABLE feedback ADD COLUMN parallel_tool_calls INTEGER;
ALTER TABLE feedback ADD COLUMN chosen_tool_calls TEXT;
ALTER TABLE feedback ADD COLUMN rejected_tool_calls TEXT;
`;

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: "completions and feedback", up: completionsAndFeedback },
  { version: 2, name: "files, fine-tuning jobs and model versions", up: filesJobsVersions },
  { version: 3, name: "prompt files", up: promptFiles },
  { version: 4, name: "api keys", up: apiKeysTable },
  { version: 5, name: "owners", up: owners },
  { version: 6, name: "feedback provenance", up: feedbackProvenance },
  { version: 7, name: "preference tools", up: preferenceTools },
];
