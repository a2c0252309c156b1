"""Structured event logs: one event per line, like the seed daemon's (seeds 000/001).

Every line carries a message plus key/value fields; the session layer always binds
``neighbor``, ``neighbor_name``, ``fsm_state``, ``conn_id``, ``direction`` and ``event``
where they apply. Two renderings of the same record:

    human (default):  2026-01-17T20:18:33.716Z INFO  fsm transition open confirm -> established  neighbor=127.0.0.3 neighbor_name=r1 fsm_state=open confirm
    JSON lines:       {"time":"2026-01-17T20:18:33.716Z","level":"info","unit":"session","msg":"fsm transition ...","neighbor":"127.0.0.3",...}

Built on the standard ``logging`` module so that handlers, levels and pytest's caplog keep
working; the fields travel in ``record.fields``.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Mapping, Optional, TextIO

import msgspec

__all__ = ["Log", "get_logger", "configure", "HumanFormatter", "JsonFormatter", "FIELD_ORDER"]

ROOT = "rserver"

# fields printed first, in this order, when present (the seed daemon's vocabulary)
FIELD_ORDER = ("neighbor", "neighbor_name", "fsm_state", "conn_id", "direction", "event")

_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "crit",
}


def _timestamp(created: float) -> str:
    secs = int(created)
    millis = int((created - secs) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


def _ordered(fields: Mapping[str, Any]) -> list[tuple[str, Any]]:
    head = [(k, fields[k]) for k in FIELD_ORDER if k in fields and fields[k] is not None]
    tail = sorted((k, v) for k, v in fields.items() if k not in FIELD_ORDER and v is not None)
    return head + tail


def _render_value(v: Any) -> str:
    s = v if isinstance(v, str) else str(v)
    # quote values that would otherwise be ambiguous on a key=value line
    if not s or any(c in s for c in ' ="\n'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class HumanFormatter(logging.Formatter):
    """``TIME LEVEL message  key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        level = _LEVEL_NAMES.get(record.levelno, record.levelname.lower()).upper()
        line = f"{_timestamp(record.created)} {level:<5} {record.getMessage()}"
        if fields:
            line += "  " + " ".join(f"{k}={_render_value(v)}" for k, v in _ordered(fields))
        if record.exc_info:
            line += "  exc=" + _render_value(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, unit, msg, then the fields."""

    _enc = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "unit": record.name[len(ROOT) + 1:] if record.name.startswith(ROOT + ".") else record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None) or {}
        for k, v in _ordered(fields):
            if k not in out:
                out[k] = v if isinstance(v, (str, int, float, bool)) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self._enc.encode(out).decode()


class Log:
    """A logger with bound context fields; ``bind`` returns a new one with more."""

    __slots__ = ("_logger", "_fields")

    def __init__(self, logger: logging.Logger, fields: Optional[Mapping[str, Any]] = None):
        self._logger = logger
        self._fields = dict(fields or {})

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self._fields)

    def bind(self, **fields: Any) -> "Log":
        merged = dict(self._fields)
        merged.update(fields)
        return Log(self._logger, merged)

    def isEnabledFor(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def log(self, level: int, msg: str, /, exc_info: Any = None, **fields: Any) -> None:
        if not self._logger.isEnabledFor(level):
            return
        merged = dict(self._fields)
        merged.update(fields)
        self._logger.log(level, msg, extra={"fields": merged}, exc_info=exc_info, stacklevel=3)

    def debug(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.DEBUG, msg, **fields)

    def info(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.INFO, msg, **fields)

    def warning(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.WARNING, msg, **fields)

    def error(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.ERROR, msg, **fields)

    def exception(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.ERROR, msg, exc_info=True, **fields)


def get_logger(unit: str, **fields: Any) -> Log:
    """A logger for one unit of the daemon (``session``, ``dispatcher``, ``rib``...)."""
    return Log(logging.getLogger(f"{ROOT}.{unit}"), fields)


def configure(fmt: str = "human", level: str | int = "info", stream: Optional[TextIO] = None) -> logging.Handler:
    """Send rserver's logs to ``stream`` (stderr by default) as ``human`` or ``json`` lines.

    Replaces any handler a previous call installed, so a reload can switch formats.
    """
    if fmt not in ("human", "json"):
        raise ValueError(f"log format must be 'human' or 'json', not {fmt!r}")
    if isinstance(level, str):
        lv = logging.getLevelName(level.upper() if level.lower() != "warn" else "WARNING")
        if not isinstance(lv, int):
            raise ValueError(f"unknown log level {level!r}: expected debug, info, warning or error")
        level = lv
    root = logging.getLogger(ROOT)
    for h in list(root.handlers):
        if getattr(h, "_rserver", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler._rserver = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler
