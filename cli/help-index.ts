// Every command's and subcommand's help, by what the user types before `--help`
// (`hybridchat help train sft` looks up "train sft"); "" is the program's own.
import { CHAT_HELP, HELP, INIT_HELP, PIPELINE_HELP, SERVE_HELP, TRAIN_DPO_HELP, TRAIN_HELP, TRAIN_PPO_HELP, TRAIN_RM_HELP, TRAIN_SFT_HELP } from "./help.js";

export const HELPS: Readonly<Record<string, string>> = {
  "": HELP,
  serve: SERVE_HELP,
  init: INIT_HELP,
  train: TRAIN_HELP,
  "train sft": TRAIN_SFT_HELP,
  "train rm": TRAIN_RM_HELP,
  "train dpo": TRAIN_DPO_HELP,
  "train ppo": TRAIN_PPO_HELP,
  pipeline: PIPELINE_HELP,
  chat: CHAT_HELP,
};
