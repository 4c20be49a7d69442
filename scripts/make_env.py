"""Create .env from .env.example if it is missing, filling `__GENERATE__` with fresh secrets.

Only values marked `__GENERATE__` are generated; everything else is copied as is. An
existing .env is never touched. `APP_ENV_FILE` names another file to use instead of .env.
"""

import os
import secrets
import sys
from pathlib import Path

GENERATORS = {
    "BEHEST_KEY": lambda: "behest_sk_live_" + secrets.token_hex(16),
}


def main(root: Path) -> int:
    target = root / os.environ.get("APP_ENV_FILE", ".env")
    example = root / ".env.example"
    if target.exists():
        return 0
    lines = []
    for line in example.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and value.strip() == "__GENERATE__" and not line.lstrip().startswith("#"):
            make = GENERATORS.get(name.strip(), lambda: secrets.token_urlsafe(32))
            line = f"{name}={make()}"
        lines.append(line)
    target.write_text("\n".join(lines) + "\n")
    target.chmod(0o600)
    print(f"Created {target} with fresh development secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent.parent))
