// The terminal chat's slash commands, apart so `hybridchat --help` loads nothing heavy.
export const CHAT_COMMANDS = `Commands:
  /good, /bad [comment]   rate the last answer
  /correct TEXT           give a better answer for the last one
  /compare                two new answers to your last message; pick the better one
  /retry                  a new answer to your last message
  /reset                  forget the conversation
  /help, /quit
`;
