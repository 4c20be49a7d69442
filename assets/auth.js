// Sign-in, registration and sign-out against the app's own /api/auth/* routes.
// The server answers with an HttpOnly session cookie; the page then loads the next route
// in full, so the new websocket handshake carries the cookie. Passwords never pass
// through Reflex state.
(function () {
  "use strict";

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = { ok: false, error: "The server answered unexpectedly (" + response.status + ")." };
    }
    return { ok: response.ok && data.ok !== false, data: data };
  }

  function showError(form, text) {
    const slot = form.querySelector('[data-testid="auth-error"]');
    if (slot) slot.textContent = text;
  }

  // Capture phase on document: runs before React's own submit handling.
  document.addEventListener(
    "submit",
    async function (event) {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.dataset.authForm) return;
      event.preventDefault();
      event.stopPropagation();
      const kind = form.dataset.authForm;
      const fields = Object.fromEntries(new FormData(form).entries());
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
      showError(form, "");
      try {
        const result = await post("/api/auth/" + kind, fields);
        if (result.ok) {
          window.location.assign(result.data.redirect || form.dataset.next || "/chat");
          return;
        }
        showError(form, result.data.error || "That did not work. Try again.");
      } catch (_) {
        showError(form, "The server could not be reached. Try again.");
      }
      if (button) button.disabled = false;
    },
    true
  );

  window.behestAuth = {
    logout: async function () {
      try {
        await post("/api/auth/logout");
      } finally {
        window.location.assign("/login");
      }
    },
  };
})();
