"""Time to first token in the browser: browser direct vs. server relay, in one run.

Starts the app the way `make run` does (embedded gateway, offline model), signs a user in,
and in one headless Chromium page alternates:

- relay: the chat page's own path (question typed into the composer, Enter; the Reflex
  backend streams from the gateway and pushes the draft over the websocket); time from the
  key press to the first answer text in the DOM, and to the finished message;
- direct: `behestDirect.streamChat` in the same page (token from `/api/behest/token`,
  then `POST {BEHEST_PUBLIC_BASE_URL}/v1/chat/completions` cross-origin); time from the
  call to the first token written into the DOM, and to the end of the stream.

The first direct call also fetches the token; it is reported on its own row. Prints one
table of medians (and min-max).

    .venv/bin/python bench/direct_vs_relay_bench.py [--runs 7] [--delay-ms 15]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.app import CHROMIUM, CHROMIUM_ARGS, project_copy, run_app

QUESTION = "How do I read a file in Python?"
NO_LIMITS = (
    '{"free": {"rpm": 100000, "requests_per_day": 1000000, "tokens_per_day": 1000000000}}'
)

WATCH_RELAY = """() => {
  window.__t0 = null; window.__first = null;
  const box = document.querySelector('[data-testid="composer-input"]');
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && window.__t0 === null) window.__t0 = performance.now();
  }, {capture: true});
  new MutationObserver(() => {
    if (window.__first !== null || window.__t0 === null) return;
    const el = document.querySelector('[data-testid="message"][data-status="streaming"]');
    // Before the first token the bubble shows the phase, not the answer.
    if (el && !el.querySelector('[data-testid="turn-phase"]') && el.innerText.trim())
      window.__first = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

DIRECT = """async ([baseUrl, question]) => {
  const out = document.getElementById("bench-direct") ||
    document.body.appendChild(Object.assign(document.createElement("pre"), {id: "bench-direct"}));
  out.textContent = "";
  let first = null;
  const t0 = performance.now();
  const r = await window.behestDirect.streamChat({
    baseUrl, messages: [{role: "user", content: question}],
    onDelta: (_piece, text) => {
      out.textContent = text;
      if (first === null) first = performance.now() - t0;
    },
  });
  return {first, total: performance.now() - t0, status: r.status, kind: r.kind,
          httpStatus: r.httpStatus};
}"""


def relay_turn(page: Page, turn: int) -> tuple[float, float]:
    """One relayed turn through the chat page: (ms to first text, ms to done)."""
    page.evaluate(WATCH_RELAY)
    box = page.get_by_test_id("composer-input")
    box.fill(QUESTION)
    box.press("Enter")
    done = page.locator('[data-testid="message"][data-role="assistant"][data-status="done"]')
    page.wait_for_function(
        f"""() => document.querySelectorAll(
              '[data-testid="message"][data-role="assistant"][data-status="done"]'
            ).length >= {turn}""",
        timeout=60_000,
    )
    finished = page.evaluate("performance.now()")
    first, t0 = page.evaluate("[window.__first, window.__t0]")
    assert done.count() >= turn and first is not None and t0 is not None
    return first - t0, finished - t0


def measure(runs: int, delay_ms: int) -> dict[str, list[float]]:
    """Start the app and time `runs` turns each way, alternating."""
    results: dict[str, list[float]] = {
        "relay_first": [],
        "relay_total": [],
        "direct_first": [],
        "direct_total": [],
        "cold_first": [],
        "cold_total": [],
    }
    with tempfile.TemporaryDirectory() as tmp, run_app(
        Path(tmp),
        project_copy(Path(tempfile.mkdtemp(dir=tmp))),
        BEHEST_GATEWAY_TOKEN_DELAY_MS=str(delay_ms),
        # The free tier's 10 requests per minute would stop the bench, not measure it.
        BEHEST_GATEWAY_LIMITS=NO_LIMITS,
    ) as app, sync_playwright() as pw:
        registered = httpx.post(
            f"{app.url}/api/auth/register",
            json={
                "username": f"bench{secrets.token_hex(3)}",
                "display_name": "Bench",
                "password": "bench password",
            },
            headers={"Origin": app.url},
        )
        registered.raise_for_status()
        public_url = f"http://localhost:{app.env['BEHEST_GATEWAY_PORT']}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=app.url)
        context.add_cookies(
            [{"name": k, "value": v, "url": app.url} for k, v in registered.cookies.items()]
        )
        page = context.new_page()
        page.goto("/chat")
        page.get_by_test_id("composer-input").wait_for()
        page.wait_for_function("() => window.behestDirect !== undefined")

        cold = page.evaluate(DIRECT, [public_url, QUESTION])
        assert cold["status"] == "done", cold
        results["cold_first"].append(cold["first"])
        results["cold_total"].append(cold["total"])
        for turn in range(1, runs + 1):
            first, total = relay_turn(page, turn)
            results["relay_first"].append(first)
            results["relay_total"].append(total)
            direct = page.evaluate(DIRECT, [public_url, QUESTION])
            assert direct["status"] == "done", direct
            results["direct_first"].append(direct["first"])
            results["direct_total"].append(direct["total"])
        browser.close()
    return results


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.0f}-{max(values):.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="turns per transport")
    parser.add_argument("--delay-ms", type=int, default=15, help="offline model pause per token")
    args = parser.parse_args()
    results = measure(args.runs, args.delay_ms)
    print(
        f"\nTime to first token in the browser, {args.runs} turns each, offline model at "
        f"{args.delay_ms} ms/token; ms, median (min-max)\n"
    )
    print(f"{'transport':<38}{'first token':>22}{'whole answer':>24}")
    rows = (
        ("server relay (chat page)", "relay"),
        ("browser direct (token cached)", "direct"),
        ("browser direct, first call (+token)", "cold"),
    )
    for label, key in rows:
        first, total = _cell(results[f"{key}_first"]), _cell(results[f"{key}_total"])
        print(f"{label:<38}{first:>22}{total:>24}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
