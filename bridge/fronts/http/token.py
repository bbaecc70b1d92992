"""The local control API's bearer token: made anew at every start, written with mode 0600 to
state_dir/api-token and to a per-user runtime folder keyed by the API port, where the CLI finds it.

Whoever can read the file may command the bridge as an admin; the files are readable by the account
the bridge runs as (and root) only.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from pathlib import Path

TOKEN_FILE = "api-token"


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"openstrom-bridge-{os.getuid()}"


def _private_dir(path: Path) -> bool:
    """Make or accept a folder only we can enter (never one another user prepared in /tmp)."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError:
        return False
    return path.is_dir() and not path.is_symlink() and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _write_secret(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def create_api_token(state_dir: Path, port: int) -> tuple[str, list[Path]]:
    """A fresh token, and the files it was written to."""
    token = secrets.token_urlsafe(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    files = [state_dir / TOKEN_FILE]
    _write_secret(files[0], token)
    run = runtime_dir()
    if _private_dir(run):
        files.append(run / f"api-{port}.token")
        _write_secret(files[1], token)
    return token, files


def find_api_token(port: int, state_dir: Path | None = None) -> str | None:
    """What the CLI sends: $OPENSTROM_API_TOKEN, else state_dir's token file, else the runtime copy."""
    if token := os.environ.get("OPENSTROM_API_TOKEN"):
        return token.strip()
    for path in ([state_dir / TOKEN_FILE] if state_dir else []) + [runtime_dir() / f"api-{port}.token"]:
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return None


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
