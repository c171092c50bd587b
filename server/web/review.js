// The Review tab: the free-text preferences user keys sent ({prompt, chosen, rejected}),
// pending until an admin approves them (they may then train) or rejects them (never).
// Each item shows the prompt, both answers and the sending key's id; texts are set as
// text, never as HTML. Approve and reject are admin routes: a user key sees a 403.
import { call } from "./api.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const say = (/** @type {string} */ text) => ($("review-status").textContent = text);

/** an element with its text (never HTML: these texts are whatever a user sent) */
function el(/** @type {string} */ tag, /** @type {string} */ text, /** @type {string} */ cls = "") {
  const e = document.createElement(tag);
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** The conversation a preference answers, as "role: text" lines. */
function promptText(/** @type {{ role: string, content: unknown }[]} */ messages) {
  return messages.map((m) => `${m.role}: ${typeof m.content === "string" ? m.content : JSON.stringify(m.content)}`).join("\n");
}

function item(/** @type {any} */ f) {
  const art = document.createElement("article");
  art.className = "review-item";
  art.dataset.feedback = f.id;
  art.append(
    el("p", `${f.id} from ${f.owner ?? "no key"}, ${new Date(f.created * 1000).toLocaleString()}`, "meta"),
    el("pre", promptText(f.prompt ?? [])),
    el("p", `chosen: ${f.chosen ?? ""}`, "chosen-text"),
    el("p", `rejected: ${f.rejected ?? ""}`, "rejected-text"),
  );
  const tools = document.createElement("div");
  tools.className = "tools";
  for (const [verb, label] of [["approve", "approve: may train"], ["reject", "reject: never trains"]]) {
    const b = el("button", label);
    /** @type {HTMLButtonElement} */ (b).type = "button";
    b.setAttribute("aria-label", `${verb} ${f.id}`);
    b.onclick = () => void decide(f.id, verb);
    tools.append(b);
  }
  art.append(tools);
  return art;
}

async function decide(/** @type {string} */ id, /** @type {string} */ verb) {
  try {
    const f = await call(`/v1/feedback/${encodeURIComponent(id)}/${verb}`, {});
    await refreshReview();
    say(`${f.id} ${f.status}.`);
  } catch (e) {
    say(`Could not ${verb} ${id}: ${/** @type {Error} */ (e).message}`);
  }
}

export async function refreshReview() {
  try {
    const page = await call("/v1/feedback?status=pending&limit=100");
    $("review-list").replaceChildren(...page.data.map(item));
    $("review-empty").hidden = page.data.length > 0;
  } catch (e) {
    say(/** @type {Error} */ (e).message);
  }
}
