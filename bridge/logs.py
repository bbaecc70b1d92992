"""structlog set up once: human-readable on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

# structlog imports rich's traceback renderer, and with it pygments, whenever rich is installed (the
# status command draws with rich): ~4 MB resident in every bridge process for a way of showing
# tracebacks it never uses (console logs get structlog's plain traceback, JSON lines format_exc_info).
# A None entry makes that one import fail, as if rich were absent; rich itself still imports later.
_hide_rich = "rich" not in sys.modules
if _hide_rich:
    sys.modules["rich"] = None  # type: ignore[assignment]
try:
    import structlog
finally:
    if _hide_rich:
        del sys.modules["rich"]


def configure_logging(*, level: str = "info", json: bool | None = None) -> None:
    """``json=None`` picks JSON lines unless stderr is a terminal."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # pymodbus and asyncua log through the standard library; keep them quiet unless asked
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("pymodbus", "asyncua"):
        logging.getLogger(noisy).setLevel(logging.ERROR if level != "debug" else logging.INFO)


def get_logger(name: str, **context: Any) -> Any:
    return structlog.get_logger(name).bind(**context)


_audit_log = structlog.get_logger("bridge.audit")


def audit(event: str, **fields: Any) -> None:
    """One line in the audit trail (logger ``bridge.audit``): commands, their refusals, and every
    refused peer or write, with who, from where and why."""
    _audit_log.info(event, **fields)
