// Every command's and subcommand's help, by what the user types before `--help`
// (`hybridchat help train sft` looks up "train sft"); "" is the program's own.
// Each text lives beside its command in `<command>.help.ts`.
import { HELP } from "./main.help.js";
import { SERVE_HELP } from "./serve.help.js";
import { INIT_HELP } from "./init.help.js";
import { QUANTIZE_HELP } from "./quantize.help.js";
import { CONVERT_HELP } from "./convert.help.js";
import { CHAT_HELP } from "./chat.help.js";
import { PIPELINE_HELP } from "./pipeline.help.js";
import { KEYS_CREATE_HELP, KEYS_HELP, KEYS_LIST_HELP, KEYS_REVOKE_HELP } from "./keys.help.js";
import { TRAIN_HELP } from "./train/train.help.js";
import { TRAIN_SFT_HELP } from "./train/sft.help.js";
import { TRAIN_DPO_HELP, TRAIN_RM_HELP } from "./train/pref.help.js";
import { TRAIN_PPO_HELP } from "./train/ppo.help.js";

export const HELPS: Readonly<Record<string, string>> = {
  "": HELP,
  serve: SERVE_HELP,
  init: INIT_HELP,
  quantize: QUANTIZE_HELP,
  convert: CONVERT_HELP,
  train: TRAIN_HELP,
  "train sft": TRAIN_SFT_HELP,
  "train rm": TRAIN_RM_HELP,
  "train dpo": TRAIN_DPO_HELP,
  "train ppo": TRAIN_PPO_HELP,
  pipeline: PIPELINE_HELP,
  chat: CHAT_HELP,
  keys: KEYS_HELP,
  "keys create": KEYS_CREATE_HELP,
  "keys list": KEYS_LIST_HELP,
  "keys revoke": KEYS_REVOKE_HELP,
};
