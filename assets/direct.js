// Browser-direct calls to Behest with the signed-in user's per-user token.
//
// window.behestDirect:
//   streamChat({baseUrl, messages, sessionId, threadId, signal, onDelta, onUsage,
//               maxTokens, maxRetries})
//     -> Promise<{text, status: "done"|"stopped"|"error", kind, code, message, detail,
//                 httpStatus, retryAfter, traceId, usage, sessionId}>   (never rejects)
//     onDelta(piece, textSoFar) per content piece; onUsage(usage) for the usage chunk.
//   runTurn({baseUrl, messages, sessionId, threadId, target, answerId, offset})
//     -> the same result; renders the reply into the element `target` (a CSS selector)
//        while it streams, and with `answerId` hands each piece to the page's reply in
//        progress (assets/live_draft.js) at `offset` + its place in the reply, so the chat
//        page renders it like a relayed one. stop() aborts it. Made for
//        rx.call_script(..., callback=...).
//   stop() -> whether a turn was running.
//   running() -> whether this page is running a turn now (a reloaded page is not).
//   checkOrigin({baseUrl})
//     -> Promise<{result: "pass"|"origin_blocked"|"token_unreachable"|"gateway_unreachable"
//                         |"gateway_error"|"signed_out", origin, baseUrl, detail}>
//     Token fetch, then a "no-cors" probe (reachable at all?), then a real cross-origin
//     one-token request (CORS preflight + POST). Fails while reachable = origin blocked.
//   tokenInfo() -> {cached, expiresAt, sessionId, fetches}   (never the token itself)
//   _debugExpireToken() -> make the cached token look 30 s from expiry (tests).
//
// The token lives in this closure only: never in localStorage, sessionStorage or a cookie.
// It is fetched from the app's POST /api/behest/token with the session cookie, reused until
// 60 s before it expires (one request at a time), and dropped and fetched once more when the
// gateway answers 401. Error kinds and sentences match the server relay's (state/failures.py
// describe_error): 402 quota, 429 rate_limited (+ Retry-After), 5xx server (retried twice
// with backoff before any byte, like the relay), a stream that ends before [DONE] cut, and
// a failed fetch (network down or blocked by CORS: browsers do not tell them apart)
// unreachable.
(function () {
  "use strict";

  const TOKEN_PATH = "/api/behest/token";
  const GATEWAY_STATUS_PATH = "/api/behest/gateway-status";
  const REFRESH_MARGIN_S = 60;
  const DEFAULT_RETRIES = 2;
  const RETRY_BACKOFF_MS = 250;
  const MAX_DETAIL_CHARS = 300;

  const MESSAGES = {
    quota: "The daily quota of your plan is used up. It resets at midnight UTC.",
    rate_limited: "Too many requests right now.",
    auth: "The gateway did not accept the credentials. Check the settings page.",
    forbidden: "The gateway refused this project or user.",
    bad_request: "The gateway rejected the request.",
    server: "The model service failed. The answer so far is kept; retry.",
    unreachable: "The gateway could not be reached. Retry in a moment.",
    cut: "The answer was cut off. The part that arrived is kept; retry.",
    error: "Something went wrong with this answer. Retry.",
    signed_out: "You are signed out. Sign in again.",
    token: "This app did not hand out a Behest token. Retry in a moment.",
  };

  class TokenError extends Error {
    constructor(kind, detail) {
      super(detail);
      this.kind = kind; // "signed_out" | "token"
    }
  }

  // ── token cache ────────────────────────────────────────────────────────────
  let cached = null; // {token, sessionId, expiresAt, deadline}
  let pending = null;
  let fetches = 0;

  const nowSeconds = () => Date.now() / 1000;

  // Seconds the token has left, by the server's own clock when it says what time it is,
  // so that a browser clock that is off does not make a fresh token look expired.
  function secondsLeft(body, response) {
    const ttl = Number(body.ttl);
    const expiresAt = Number(body.expiresAt);
    const serverNow = Date.parse(response.headers.get("Date") || "") / 1000;
    if (Number.isFinite(expiresAt) && Number.isFinite(serverNow)) {
      const left = expiresAt - serverNow;
      return Number.isFinite(ttl) ? Math.min(ttl, left) : left;
    }
    return Number.isFinite(ttl) ? ttl : 0;
  }

  async function requestToken() {
    fetches += 1;
    let response;
    try {
      response = await fetch(TOKEN_PATH, {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (_) {
      throw new TokenError("token", TOKEN_PATH + " could not be reached");
    }
    if (response.status === 401) throw new TokenError("signed_out", "not signed in");
    if (!response.ok) {
      throw new TokenError("token", TOKEN_PATH + " answered HTTP " + response.status);
    }
    let body;
    try {
      body = await response.json();
    } catch (_) {
      throw new TokenError("token", TOKEN_PATH + " answered something that is not JSON");
    }
    if (!body || typeof body.token !== "string" || !body.token) {
      throw new TokenError("token", TOKEN_PATH + " answered without a token");
    }
    return {
      token: body.token,
      sessionId: typeof body.sessionId === "string" ? body.sessionId : "",
      expiresAt: Number(body.expiresAt) || 0,
      deadline: nowSeconds() + secondsLeft(body, response),
    };
  }

  // The cached token while it has more than 60 s left, else a new one (one fetch at a time).
  function getToken(fresh) {
    if (!fresh && cached && cached.deadline - nowSeconds() > REFRESH_MARGIN_S) {
      return Promise.resolve(cached);
    }
    if (!pending) {
      pending = requestToken()
        .then(function (token) {
          cached = token;
          return token;
        })
        .finally(function () {
          pending = null;
        });
    }
    return pending;
  }

  function invalidate(token) {
    if (cached && cached.token === token) cached = null;
  }

  // ── helpers ────────────────────────────────────────────────────────────────
  function isAbort(err, signal) {
    return (signal && signal.aborted) || (err && err.name === "AbortError");
  }

  function sleep(ms, signal) {
    return new Promise(function (resolve, reject) {
      if (signal && signal.aborted) return reject(new DOMException("aborted", "AbortError"));
      const timer = setTimeout(resolve, ms);
      if (signal) {
        signal.addEventListener(
          "abort",
          function () {
            clearTimeout(timer);
            reject(new DOMException("aborted", "AbortError"));
          },
          { once: true }
        );
      }
    });
  }

  function kindForStatus(status) {
    if (status === 402) return "quota";
    if (status === 429) return "rate_limited";
    if (status === 401) return "auth";
    if (status === 403) return "forbidden";
    if (status === 400 || status === 422) return "bad_request";
    if (status >= 500) return "server";
    return "error";
  }

  function describe(kind, retryAfter) {
    const text = MESSAGES[kind] || MESSAGES.error;
    if (kind === "rate_limited" && retryAfter) return text + " Try again in " + retryAfter + " s.";
    return text;
  }

  function parseRetryAfter(value) {
    if (!value) return null;
    const text = value.trim();
    if (/^\d+$/.test(text)) return Number(text);
    const when = Date.parse(text);
    return Number.isFinite(when) ? Math.max(0, Math.round((when - Date.now()) / 1000)) : null;
  }

  function clip(text) {
    const flat = String(text || "").replace(/\s+/g, " ").trim();
    return flat.length <= MAX_DETAIL_CHARS ? flat : flat.slice(0, MAX_DETAIL_CHARS - 1) + "…";
  }

  async function readEnvelope(response) {
    try {
      const body = await response.json();
      const error = body && body.error;
      if (error && typeof error === "object") {
        return { code: String(error.code || ""), detail: clip(error.message) };
      }
      return { code: String((body && body.code) || ""), detail: clip(error) };
    } catch (_) {
      return { code: "", detail: "" };
    }
  }

  // The data of one SSE event (lines starting "data:", joined with LF), or null.
  function eventData(frame) {
    const lines = [];
    for (const raw of frame.split("\n")) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (!line.startsWith("data:")) continue;
      const value = line.slice(5);
      lines.push(value.startsWith(" ") ? value.slice(1) : value);
    }
    return lines.length ? lines.join("\n") : null;
  }

  // ── chat ───────────────────────────────────────────────────────────────────
  // POST the chat request; on 401 drop the token and try once more with a new one;
  // retry 5xx and failed fetches (with backoff) before any byte arrived.
  async function openStream(o, result) {
    const retries = o.maxRetries === undefined ? DEFAULT_RETRIES : o.maxRetries;
    const body = {
      messages: o.messages || [],
      stream: true,
      stream_options: { include_usage: true },
    };
    if (o.maxTokens) body.max_tokens = o.maxTokens;
    let renewed = false;
    let attempt = 0;
    for (;;) {
      const token = await getToken(false);
      result.sessionId = o.sessionId || token.sessionId;
      const headers = {
        Authorization: "Bearer " + token.token,
        "Content-Type": "application/json",
        Accept: "text/event-stream",
        "X-Session-Id": result.sessionId,
      };
      if (o.threadId) headers["X-Thread-Id"] = o.threadId;
      let response;
      try {
        response = await fetch(o.baseUrl.replace(/\/+$/, "") + "/v1/chat/completions", {
          method: "POST",
          headers: headers,
          body: JSON.stringify(body),
          signal: o.signal,
          credentials: "omit", // Behest takes the token, never cookies
          cache: "no-store",
        });
      } catch (err) {
        if (isAbort(err, o.signal) || attempt >= retries) throw err;
        await sleep(RETRY_BACKOFF_MS * 2 ** attempt++, o.signal);
        continue;
      }
      if (response.status === 401 && !renewed) {
        renewed = true;
        invalidate(token.token);
        await response.body?.cancel();
        continue;
      }
      if (response.status >= 500 && attempt < retries) {
        await response.body?.cancel();
        await sleep(RETRY_BACKOFF_MS * 2 ** attempt++, o.signal);
        continue;
      }
      return response;
    }
  }

  async function streamChat(options) {
    const o = options || {};
    const result = {
      text: "",
      status: "done",
      kind: "",
      code: "",
      message: "",
      httpStatus: 0,
      retryAfter: null,
      traceId: "",
      usage: null,
      sessionId: o.sessionId || "",
      detail: "",
    };
    const fail = function (kind, extra) {
      Object.assign(result, extra || {}, { status: "error", kind: kind });
      result.message = describe(kind, result.retryAfter);
      return result;
    };
    const stopped = function () {
      result.status = "stopped";
      result.message = "Stopped.";
      return result;
    };

    let response;
    try {
      response = await openStream(o, result);
    } catch (err) {
      if (isAbort(err, o.signal)) return stopped();
      if (err instanceof TokenError) {
        return fail(err.kind === "signed_out" ? "signed_out" : "token", { detail: err.message });
      }
      return fail("unreachable", { detail: "fetch failed (network down, or blocked by CORS)" });
    }
    result.httpStatus = response.status;
    result.traceId = response.headers.get("X-Trace-Id") || "";
    if (!response.ok) {
      const envelope = await readEnvelope(response);
      return fail(kindForStatus(response.status), {
        code: envelope.code,
        detail: envelope.detail,
        retryAfter: parseRetryAfter(response.headers.get("Retry-After")),
      });
    }

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let finished = false;
    try {
      for (;;) {
        const step = await reader.read();
        if (step.done) break;
        buffer += decoder.decode(step.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const data = eventData(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (data === null) continue;
          if (data === "[DONE]") {
            finished = true;
            return result;
          }
          let chunk;
          try {
            chunk = JSON.parse(data);
          } catch (_) {
            chunk = null;
          }
          if (!chunk || typeof chunk !== "object" || Array.isArray(chunk)) {
            return fail("cut", { code: "stream_parse_error", detail: "a frame is not JSON" });
          }
          if (chunk.error) {
            const error = typeof chunk.error === "object" ? chunk.error : { message: chunk.error };
            return fail("cut", {
              code: String(error.code || "stream_error"),
              detail: clip(error.message),
            });
          }
          if (chunk.usage && typeof chunk.usage === "object") {
            result.usage = chunk.usage;
            if (o.onUsage) o.onUsage(chunk.usage);
          }
          const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
          const piece = choice && choice.delta ? choice.delta.content : null;
          if (typeof piece === "string" && piece) {
            result.text += piece;
            if (o.onDelta) o.onDelta(piece, result.text);
          }
        }
      }
    } catch (err) {
      if (isAbort(err, o.signal)) return stopped();
      return fail("cut", { code: "stream_cut", detail: "the connection broke" });
    } finally {
      if (!finished) reader.cancel().catch(function () {});
    }
    if (o.signal && o.signal.aborted) return stopped();
    return fail("cut", { code: "stream_cut", detail: "the stream ended before [DONE]" });
  }

  // ── one chat turn for the app's page ───────────────────────────────────────
  let running = null; // the AbortController of the turn in progress

  async function runTurn(options) {
    const o = options || {};
    if (running) running.abort();
    const controller = new AbortController();
    running = controller;
    // Looked up on every piece: the page may render (or re-render) the element after the
    // turn started.
    const target = function () {
      return o.target ? document.querySelector(o.target) : null;
    };
    if (target()) target().textContent = "";
    try {
      return await streamChat({
        baseUrl: o.baseUrl,
        messages: o.messages,
        sessionId: o.sessionId,
        threadId: o.threadId,
        signal: controller.signal,
        onDelta: function (piece, text) {
          const element = target();
          if (element) element.textContent = text;
          if (o.answerId && window.behestLive) {
            window.behestLive.put(o.answerId, (o.offset || 0) + text.length - piece.length, piece);
          }
        },
      });
    } finally {
      if (running === controller) running = null;
    }
  }

  function stop() {
    if (!running) return false;
    running.abort();
    return true;
  }

  // ── the settings page's origin check ───────────────────────────────────────
  // Whether this browser reaches the gateway at all. A "no-cors" request needs no CORS
  // approval (its answer is opaque), so it fails only when the gateway cannot be reached.
  // It asks for the public JWKS: a path that needs no token, so the browser's console
  // shows no 401 for a check that passed.
  async function browserReaches(baseUrl) {
    try {
      await fetch(baseUrl + "/.well-known/jwks.json", {
        mode: "no-cors",
        credentials: "omit",
        cache: "no-store",
      });
      return true;
    } catch (_) {
      return false;
    }
  }

  // Whether the app's server reaches the gateway: true, false, or null when unknown.
  async function serverReaches() {
    try {
      const response = await fetch(GATEWAY_STATUS_PATH, {
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!response.ok) return null;
      const body = await response.json();
      return typeof body.reachable === "boolean" ? body.reachable : null;
    } catch (_) {
      return null;
    }
  }

  async function checkOrigin(options) {
    const baseUrl = ((options && options.baseUrl) || "").replace(/\/+$/, "");
    const origin = window.location.origin;
    const report = function (result, detail) {
      return { result: result, origin: origin, baseUrl: baseUrl, detail: clip(detail) };
    };
    try {
      await getToken(true);
    } catch (err) {
      if (err.kind === "signed_out") return report("signed_out", "the token endpoint answered 401");
      return report("token_unreachable", err.message);
    }
    const reachable = await browserReaches(baseUrl);
    // A cross-origin POST with Authorization and X-Session-Id: the browser sends a CORS
    // preflight first, then the one-token request itself.
    const chat = await streamChat({
      baseUrl: baseUrl,
      messages: [{ role: "user", content: "Reply with one word." }],
      maxTokens: 1,
      maxRetries: 0,
    });
    if (chat.status === "done") {
      return report("pass", "preflight and a one-token request to " + baseUrl + " succeeded");
    }
    if (chat.kind === "unreachable") {
      if (reachable) {
        return report(
          "origin_blocked",
          "the gateway answers this browser, but refused a CORS request from " + origin
        );
      }
      const server = await serverReaches();
      return report(
        "gateway_unreachable",
        baseUrl + " does not answer this browser" +
          (server === true
            ? "; the app's server does reach the gateway, so the URL for browsers may be wrong"
            : server === false
              ? ", nor the app's server"
              : "")
      );
    }
    if (chat.kind === "signed_out") return report("signed_out", "the token endpoint answered 401");
    if (chat.kind === "token") return report("token_unreachable", chat.detail);
    return report(
      "gateway_error",
      "the test request failed: HTTP " + chat.httpStatus +
        (chat.code ? " " + chat.code : "") + (chat.detail ? " (" + chat.detail + ")" : "")
    );
  }

  window.behestDirect = Object.freeze({
    streamChat: streamChat,
    runTurn: runTurn,
    stop: stop,
    running: function () {
      return running !== null;
    },
    checkOrigin: checkOrigin,
    tokenInfo: function () {
      return {
        cached: cached !== null,
        expiresAt: cached ? cached.expiresAt : 0,
        sessionId: cached ? cached.sessionId : "",
        fetches: fetches,
      };
    },
    _debugExpireToken: function () {
      if (cached) cached.deadline = nowSeconds() + REFRESH_MARGIN_S / 2;
    },
  });
})();
