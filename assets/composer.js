// A conversation's saved draft goes into the composer when its page opens, unless something
// was typed there since the page opened: text typed right after clicking "New chat", before
// the new page's state arrives, must not be wiped by its empty draft. The chat page stays
// mounted from one conversation to the next, so pages are told apart by navigations.
// Escape stops the answer being written. A question too long to send stays in the page.
(function () {
  let navigations = 0;
  let typedAt = -1;
  for (const name of ["pushState", "replaceState"]) {
    const original = history[name];
    history[name] = function (...args) {
      navigations += 1;
      return original.apply(this, args);
    };
  }
  window.addEventListener("popstate", () => {
    navigations += 1;
  });
  document.addEventListener(
    "input",
    (event) => {
      if (!event.target || event.target.id !== "prompt") return;
      typedAt = navigations;
      const notice = document.getElementById("composer-too-long");
      if (notice && !notice.hidden && !overLimit(event.target)) notice.hidden = true;
    },
    true,
  );
  // The box's text, and the height that fits it (it grows as text is typed, not when set).
  function fill(box, text) {
    box.value = text;
    box.style.height = "auto";
    if (text) box.style.height = box.scrollHeight + "px";
  }
  // After a send: empty, and one line high again (the box grew with a long question).
  window.behestClearComposer = function () {
    const box = document.getElementById("prompt");
    if (box) fill(box, "");
  };
  // A question longer than the box's data-max-chars never leaves the page: the websocket
  // drops a message over 1 MB, and the box would already have been emptied. The page says
  // so and keeps the text; neither Send nor leaving the box (which saves the draft) sends
  // it. Capture listeners on the document run before React's, which sit on its root.
  function overLimit(box) {
    const max = Number(box.dataset.maxChars);
    return max > 0 && box.value.length > max;
  }
  function sayTooLong(box, tooLong) {
    const notice = document.getElementById("composer-too-long");
    if (!notice) return;
    notice.hidden = !tooLong;
    if (!tooLong) return;
    document.getElementById("composer-too-long-text").textContent = box.dataset.tooLong.replace(
      "{length}",
      box.value.length.toLocaleString("en-US"),
    );
  }
  document.addEventListener(
    "submit",
    (event) => {
      const box = event.target.querySelector?.("#prompt");
      if (!box) return;
      const tooLong = overLimit(box);
      sayTooLong(box, tooLong);
      if (!tooLong) return;
      event.preventDefault();
      event.stopPropagation();
    },
    true,
  );
  document.addEventListener(
    "focusout",
    (event) => {
      if (event.target.id === "prompt" && overLimit(event.target)) event.stopPropagation();
    },
    true,
  );
  // Escape stops the answer being written, as in other chat apps: from the composer or the
  // page, not from a dialog or another box, where Escape keeps its own meaning.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.isComposing || event.defaultPrevented) return;
    const box = event.target.closest?.("input, textarea, select, [contenteditable]");
    if ((box && box.id !== "prompt") || document.querySelector('[role="dialog"]')) return;
    const stop = document.querySelector('[data-testid="stop"]:not([disabled])');
    if (!stop) return;
    event.preventDefault();
    stop.click();
  });
  window.behestSeedComposer = function (text, tries = 0) {
    const box = document.getElementById("prompt");
    if (!box) {
      if (tries < 20) requestAnimationFrame(() => window.behestSeedComposer(text, tries + 1));
      return;
    }
    if (typedAt === navigations) return; // typed on this page since it opened: keep it
    fill(box, text);
  };
})();
