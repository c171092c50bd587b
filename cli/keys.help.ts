// `hybridchat keys --help` and each subcommand's, beside the command (keys.ts).

const DATA_DIR = `  --data-dir DIR   the server's data directory, as given to \`hybridchat serve --data-dir\`
                   (default ./hybridchat-data); works while the server runs
`;

export const KEYS_HELP = `Usage: hybridchat keys <create|list|revoke> [options]

Manages the API keys a server accepts besides its --api-key ones. They live in the
server's database (their SHA-256, never the key) and count from the next request on,
without a restart: a created key works at once, a revoked one gets 401 at once.
While no key exists anywhere, a server (on loopback) answers everyone; once one
exists, every request needs a key.

Subcommands:
  create   make a key with a name and a role; prints the key once
  list     the keys: id, name, role, limits, created, last used (never the key)
  revoke   revoke a key by id or name

Run \`hybridchat keys <subcommand> --help\` for its options.

Examples:
  hybridchat keys create --name alice --role user --tokens-per-minute 20000
  hybridchat keys list
  hybridchat keys revoke alice
`;

export const KEYS_CREATE_HELP = `Usage: hybridchat keys create --name NAME --role user|admin [options]

Makes an API key and prints it on stdout, once: it is not stored, only its SHA-256 is,
so copy it now (the details go to stderr, so KEY=$(hybridchat keys create ...) works).
Keys look like hc-<43 characters>: 32 random bytes, base64url.

Options:
  --name NAME                 what logs and \`keys list\` call the key: letters, digits and
                              . _ - @ (unique among keys not revoked)
  --role ROLE                 user (chat, completions, models, feedback, stored completions)
                              or admin (everything, incl. files, fine-tuning jobs, promote, /metrics)
  --requests-per-minute N     this key's request limit, instead of the server's --key-rate-limit
  --tokens-per-minute N       this key's generated-token limit, instead of the server's --key-token-limit
${DATA_DIR}  -h, --help                  this help

Examples:
  hybridchat keys create --name alice --role user
  hybridchat keys create --name ops --role admin --data-dir /var/lib/hybridchat
  hybridchat keys create --name batch-job --role user --requests-per-minute 600 --tokens-per-minute 100000
`;

export const KEYS_LIST_HELP = `Usage: hybridchat keys list [--all] [--json] [--data-dir DIR]

The keys in the server's database, oldest first: id (key_ + the start of the key's
SHA-256, what stored rows and logs record), name, role, its own limits ("default":
the server's), when it was made, when last used (to the minute). Never the key.

Options:
  --all            revoked keys too, with when they were revoked
  --json           one JSON array instead of a table
${DATA_DIR}  -h, --help       this help

Examples:
  hybridchat keys list
  hybridchat keys list --all --json --data-dir /var/lib/hybridchat
`;

export const KEYS_REVOKE_HELP = `Usage: hybridchat keys revoke ID|NAME [--data-dir DIR]

Revokes a key: from the next request on it gets 401 invalid_api_key, on a running
server too. ID is key_… as \`keys list\` shows it; NAME picks the key of that name
that is not revoked. A revoked key's name may be given to a new key. Keys given with
--api-key live on the server's command line: restart without them instead.

Options:
${DATA_DIR}  -h, --help       this help

Examples:
  hybridchat keys revoke alice
  hybridchat keys revoke key_3f2a9c0d1e4b5a67
`;
