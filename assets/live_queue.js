// Pieces of a reply in progress can arrive before the page's modules have loaded (a page
// reloaded mid-answer on a slow connection). This script runs first, from the page's head:
// it keeps them, in order, until assets/live_draft.js takes over window.behestLive.
window.behestLive = window.behestLive || {
  pending: [],
  put(answerId, at, text) {
    this.pending.push([answerId, at, text]);
  },
};
