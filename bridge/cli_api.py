"""The CLI's side of the control API: the token, one JSON request, and exit codes that say how it went."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .cli_pki import state_dir_of
from .config import DEFAULT_METRICS_PORT
from .errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_OFFLINE, EXIT_TIMEOUT, EXIT_DENIED = 0, 1, 2, 3, 4, 5, 6
# the control API's outcome word -> exit code (docs/operations.md lists them)
EXIT_CODES = {"refused": EXIT_REFUSED, "offline": EXIT_OFFLINE, "timeout": EXIT_TIMEOUT, "denied": EXIT_DENIED}


def api_token(args: argparse.Namespace) -> str | None:
    from .fronts.http.token import find_api_token

    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{args.token_file}: cannot read the API token: {exc.strerror}") from None
    port = int(args.api.rpartition(":")[2] or DEFAULT_METRICS_PORT)
    return find_api_token(port, state_dir_of(args) if args.config else None)


def open_api(args: argparse.Namespace, path: str, body: dict[str, object], timeout: float = 60) -> Any:
    """The response of one control API request (a file-like object); raises HTTPError or URLError."""
    headers = {"Content-Type": "application/json"}
    token = api_token(args)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://{args.api}{path}", data=json.dumps(body).encode(), headers=headers)
    return urllib.request.urlopen(req, timeout=timeout)


def exit_code(exc: urllib.error.HTTPError) -> int:
    """The exit code of a refused request (its error printed), from the body's outcome word."""
    doc = json.loads(exc.read() or b"{}")
    print(f"openstrom-bridge: {doc.get('error', exc.reason)}", file=sys.stderr)
    if exc.code == 401:
        return EXIT_DENIED
    return EXIT_CODES.get(str(doc.get("outcome")), EXIT_FAILED)


def unreachable(args: argparse.Namespace, exc: Exception) -> int:
    print(f"openstrom-bridge: cannot reach the bridge's control API at {args.api}: {exc}", file=sys.stderr)
    return EXIT_FAILED


def call(args: argparse.Namespace, path: str, body: dict[str, object]) -> int:
    """One request, its JSON answer printed; the exit code says how it went."""
    try:
        with open_api(args, path, body) as resp:
            print(resp.read().decode())
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        return exit_code(exc)
    except (urllib.error.URLError, OSError) as exc:
        return unreachable(args, exc)
