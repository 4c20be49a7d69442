"""Cold start: a fresh clone to the first page served with the README's run command, then a
warm restart.

    python bench/coldstart_bench.py [--keep]

1. ``git clone`` of this repository's committed state into a temporary directory;
2. ``scripts/run`` there (what ``make run`` runs): creates ``.venv`` and installs the pinned
   requirements (from the package registry, through pip's cache if it has them), writes
   ``.env``, migrates the SQLite database, builds the frontend and starts the app with the
   embedded gateway; timed until ``GET /login/`` answers 200;
3. stop, and ``scripts/run`` again in the same directory (warm restart: everything is
   installed; Reflex still compiles and builds the frontend on every start).

Ports are chosen free; nothing outside the temporary directory is written except the
package managers' caches. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 600.0


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_and_time(clone: Path, env: dict[str, str], log: Path) -> tuple[float, subprocess.Popen]:
    """Run scripts/run in ``clone``; return seconds until the login page is served."""
    url = f"http://localhost:{env['APP_PORT']}/login/"
    started = time.monotonic()
    with log.open("a") as out:
        process = subprocess.Popen(
            [str(clone / "scripts" / "run")], cwd=clone, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    while time.monotonic() - started < START_TIMEOUT_S:
        if process.poll() is not None:
            raise SystemExit(f"scripts/run exited with {process.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started, process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a starting server
    raise SystemExit(f"no page within {START_TIMEOUT_S:.0f} s; see {log}")


def stop(process: subprocess.Popen) -> None:
    """Stop scripts/run and everything it started."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="behest-coldstart-"))
    clone, log = base / "behest-chat", base / "run.log"
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("BEHEST_", "APP_", "DATABASE_URL", "REDIS_URL", "GRANIAN_",
                             "VIRTUAL_ENV"))
    }
    # The clone's own .venv must be found, not this one.
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    env.update(APP_PORT=str(free_port()), BEHEST_GATEWAY_PORT=str(free_port()))
    try:
        started = time.monotonic()
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        clone_s = time.monotonic() - started
        first_s, process = start_and_time(clone, env, log)
        stop(process)
        warm_s, process = start_and_time(clone, env, log)
        stop(process)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\nCold start with scripts/run ({os.cpu_count()} cores)")
    print(f"  {'git clone':<44}{clone_s:>8.1f} s")
    print(f"  {'fresh clone → first page (venv, .env, build)':<44}{first_s:>8.1f} s")
    print(f"  {'total from nothing':<44}{clone_s + first_s:>8.1f} s")
    print(f"  {'warm restart → first page':<44}{warm_s:>8.1f} s")
    if args.keep:
        print(f"  clone kept in {clone}")


if __name__ == "__main__":
    main()
