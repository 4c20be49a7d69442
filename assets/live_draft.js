// The replies in progress, built in the page from the pieces the server sends.
//
// The server does not resend a whole reply on every update (that grows with the square of
// its length): it sends `behestLive.put(answerId, at, text)` events (behest_chat/live_draft.py),
// where `at` is the offset of `text` in that answer. Several senders can describe the same
// answer (the running turn, the load of a page, a tab following another one), and a piece can
// arrive before the text it continues (a page reloaded mid-answer), so a piece waits until the
// text reaches its offset, and a piece never shortens the text.
//
// Pieces come a few times a second; the page shows each one over a few short steps so the
// answer flows in instead of jumping. The first text of an answer shows at once.
import { useSyncExternalStore } from "react";

const KEEP_ANSWERS = 8;
const MAX_WAITING = 512;
const STEP_MS = 50;
const STEPS_PER_PIECE = 4;
const answers = new Map(); // answerId -> {text, shown, waiting: Map(offset -> piece)}
const listeners = new Set();
let snapshot = {};
let stepping = null;

function apply(answer, at, piece) {
  if (at > answer.text.length) return false;
  if (at + piece.length > answer.text.length) answer.text = answer.text.slice(0, at) + piece;
  return true;
}

function entry(answerId) {
  let answer = answers.get(answerId);
  if (answer === undefined) {
    answer = { text: "", shown: 0, waiting: new Map() };
    answers.set(answerId, answer);
    while (answers.size > KEEP_ANSWERS) answers.delete(answers.keys().next().value);
  }
  return answer;
}

function publish() {
  snapshot = Object.fromEntries(
    [...answers].map(([id, answer]) => [id, answer.text.slice(0, answer.shown)]),
  );
  listeners.forEach((listener) => listener());
}

function step() {
  stepping = null;
  let behind = false;
  for (const answer of answers.values()) {
    const left = answer.text.length - answer.shown;
    if (left > 0) {
      answer.shown += Math.ceil(left / STEPS_PER_PIECE);
      behind ||= answer.shown < answer.text.length;
    }
  }
  publish();
  if (behind) stepping = setTimeout(step, STEP_MS);
}

function put(answerId, at, piece) {
  const answer = entry(answerId);
  if (!apply(answer, at, piece)) {
    if (answer.waiting.size < MAX_WAITING) answer.waiting.set(at, piece);
    return;
  }
  for (let joined = true; joined && answer.waiting.size; ) {
    joined = false;
    for (const [offset, rest] of answer.waiting) {
      if (offset <= answer.text.length) {
        answer.waiting.delete(offset);
        apply(answer, offset, rest);
        joined = true;
      }
    }
  }
  if (answer.shown === 0) answer.shown = answer.text.length;
  publish();
  if (stepping === null && answer.shown < answer.text.length) stepping = setTimeout(step, STEP_MS);
}

const subscribe = (listener) => {
  listeners.add(listener);
  return () => listeners.delete(listener);
};
const current = () => snapshot;

// Server-side prerendering has no window; the page sets it when it runs, and first applies
// the pieces that came before this module (kept by assets/live_queue.js).
if (typeof window !== "undefined") {
  const early = window.behestLive?.pending ?? [];
  window.behestLive = Object.freeze({ put, markdownBlocks, draftBlocks });
  early.forEach(([answerId, at, text]) => put(answerId, at, text));
}

// The top-level blocks of a markdown text, for a reply in progress: each block is rendered
// (and memoised) on its own, so a new piece renders the last block again, not the whole
// reply, which would cost the square of its length. A block starts at a line that begins in
// the first column after a blank line, outside a code fence; indented lines after a blank
// line (a list item going on) stay with their block.
export function markdownBlocks(text) {
  const blocks = [];
  let start = 0;
  let fence = null; // the opening fence's run of ` or ~ while inside a fenced code block
  let afterBlank = false;
  for (let at = 0; at <= text.length; ) {
    let end = text.indexOf("\n", at);
    if (end === -1) end = text.length;
    const line = text.slice(at, end);
    if (fence === null) {
      if (afterBlank && at > start && /^\S/.test(line)) {
        blocks.push(text.slice(start, at));
        start = at;
      }
      fence = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1] ?? null;
    } else if (closesFence(line, fence)) {
      fence = null;
    }
    afterBlank = line.trim() === "";
    at = end + 1;
  }
  blocks.push(text.slice(start));
  return blocks;
}

// A reply in progress whose last line is a block's marker alone would show what is not
// written yet: "#" an empty heading, "-" or "=" under a line of text turns that line into
// a heading, "-", "1." or ">" an empty item or quote, "`" a stray backtick where a code
// fence begins, "```py" an empty code block. The marker waits for its words. (A reply that
// ends part way is shown the same way: unfinished_text in behest_chat/live_draft.py.)
const BARE_MARKER = /(^|\n) {0,3}(#{1,6}|[-*+=_]+|\d{1,9}[.)]|>|`{1,2})[ \t]*$/;
// A table's first row shows as a line of pipes until the row of dashes under it is done
// and makes it a table: the two wait for that.
const TABLE_HEAD = /(^|\n[ \t]*\n) {0,3}\|[^\n]*(\n {0,3}[-|: \t]*)?$/;

// After an item of a numbered list, a number alone is the next item's marker begun ("3" of
// "3."); rendered, it would join the item above as its last word.
const NEXT_NUMBER = /((?:^|\n) {0,3}\d{1,9}[.)][ \t][^\n]*\n) {0,3}\d{1,9}[ \t]*$/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/gm;

export function draftBlocks(text) {
  const held = text.replace(BARE_MARKER, "$1").replace(NEXT_NUMBER, "$1").replace(TABLE_HEAD, "$1");
  return markdownBlocks(withoutOpenFence(held));
}

// A code fence just opened, with no code after it yet, would show an empty code block.
function withoutOpenFence(text) {
  const fences = [...text.matchAll(FENCE)];
  if (fences.length % 2 === 0) return text;
  const last = fences[fences.length - 1];
  const after = text.slice(last.index + last[0].length).trimEnd();
  return after.includes("\n") ? text : text.slice(0, last.index);
}

function closesFence(line, fence) {
  const trimmed = line.replace(/^ {0,3}/, "").trimEnd();
  return trimmed.length >= fence.length && [...trimmed].every((c) => c === fence[0]);
}

// {answerId: text shown so far} of the answers pieces arrived for.
export function useLiveDrafts() {
  return useSyncExternalStore(subscribe, current, current);
}
