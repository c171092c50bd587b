import { test } from "node:test";
import assert from "node:assert/strict";
import { StopMatcher } from "../engine/stop.js";

/** feeds pieces, returns what was emitted (per piece) and whether it stopped */
function run(stops: string[], pieces: string[]): { emitted: string[]; text: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  const emitted: string[] = [];
  let stopped = false;
  for (const p of pieces) {
    const r = m.push(p);
    emitted.push(r.text);
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  if (!stopped) emitted.push(m.flush());
  return { emitted, text: emitted.join(""), stopped };
}

test("no stop strings: pieces pass straight through", () => {
  const r = run([], ["Hel", "lo", " world"]);
  assert.deepEqual(r.emitted, ["Hel", "lo", " world", ""]);
  assert.equal(r.stopped, false);
});

test("a stop string split over several tokens is cut, and its prefix was never emitted", () => {
  const r = run(["</end>"], ["Hello ", "wor", "ld<", "/e", "nd", ">", " more"]);
  assert.equal(r.stopped, true);
  assert.equal(r.text, "Hello world");
  // the "<" was held back when it arrived, "/e" and "nd" emitted nothing
  assert.deepEqual(r.emitted, ["Hello ", "wor", "ld", "", "", ""]);
});

test("a held prefix that turns out not to be a stop string is released", () => {
  const r = run(["STOP"], ["go ST", "OR", "Y time"]);
  assert.equal(r.stopped, false);
  assert.equal(r.text, "go STORY time");
  assert.deepEqual(r.emitted, ["go ", "STOR", "Y time", ""]);
  // held at the end of generation: flushed as ordinary text
  const r2 = run(["STOP"], ["go ST"]);
  assert.deepEqual(r2.emitted, ["go ", "ST"]);
});

test("stop at the very start emits nothing", () => {
  assert.deepEqual(run(["Once"], ["Once", " upon"]).emitted, [""]);
  assert.deepEqual(run(["Once"], ["On", "ce upon"]).emitted, ["", ""]);
  const r = run(["\n"], ["\nabc"]);
  assert.equal(r.text, "");
  assert.equal(r.stopped, true);
});

test("stop inside one piece drops it and everything after", () => {
  const r = run([".", "!"], ["Hi there! How. are"]);
  assert.equal(r.text, "Hi there");
  assert.equal(r.stopped, true);
});

test("overlapping candidates: the first completed stop wins, cut at its start", () => {
  // "abcd" would start earlier but "bc" completes first
  assert.equal(run(["abcd", "bc"], ["x", "a", "b", "c", "d"]).text, "xa");
  // both complete in the same piece: the earlier start wins
  assert.equal(run(["abcd", "bc"], ["xabcd"]).text, "x");
  // both complete with the same token: the one starting earlier decides the cut
  assert.equal(run(["aab", "ab"], ["a", "a", "b"]).text, "");
  // self-overlapping stop: the held "aa" is released up to where the match starts
  assert.equal(run(["aab"], ["aa", "aab"]).text, "aa");
  assert.equal(run(["aab"], ["a", "a", "a", "a", "b"]).text, "aa");
});

test("multi-byte and astral text: no half characters emitted, stop strings with emoji", () => {
  const r = run(["🙂 bye"], ["héllo ", "wörld ", "🙂", " b", "ye", "!"]);
  assert.equal(r.text, "héllo wörld ");
  for (const piece of r.emitted) assert.equal(piece, Buffer.from(piece, "utf8").toString("utf8"));
  const r2 = run(["日本"], ["これは", "日", "本語"]);
  assert.equal(r2.text, "これは");
  // an emoji that is not the stop string is released whole
  const r3 = run(["🙂x"], ["a🙂", "y"]);
  assert.deepEqual(r3.emitted, ["a", "🙂y", ""]);
});

test("after a stop nothing more is emitted", () => {
  const m = new StopMatcher(["END"]);
  assert.deepEqual(m.push("abcEND"), { text: "abc", stopped: true });
  assert.deepEqual(m.push("more"), { text: "", stopped: true });
  assert.equal(m.flush(), "");
  assert.equal(m.stopped, true);
});

test("empty stop strings are ignored", () => {
  assert.equal(run([""], ["abc"]).text, "abc");
});
