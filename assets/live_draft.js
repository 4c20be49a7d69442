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
  window.behestLive = Object.freeze({ put });
  early.forEach(([answerId, at, text]) => put(answerId, at, text));
}

// {answerId: text shown so far} of the answers pieces arrived for.
export function useLiveDrafts() {
  return useSyncExternalStore(subscribe, current, current);
}
