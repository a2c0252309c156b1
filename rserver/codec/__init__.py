"""BGP-4 wire codec.

UPDATE encoding/decoding has two backends with one API (docs/codec.md): the
Cython module built from ext/_cupdate.pyx, used when it is importable, and the
pure-Python reference in update_py.py. ``RSERVER_CODEC=pure`` forces the pure
one (for debugging, or to compare).
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Optional

from . import update_py as _pure

try:  # the compiled twin; absent only when the build failed or was skipped
    from . import _cupdate as _compiled  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only on a broken build
    _compiled: Optional[ModuleType] = None

BACKENDS: dict[str, Optional[ModuleType]] = {"pure": _pure, "cython": _compiled}

_forced = os.environ.get("RSERVER_CODEC", "").strip().lower()
if _forced and _forced not in BACKENDS:
    raise ImportError(f"RSERVER_CODEC={_forced!r}: expected 'pure' or 'cython'")
if _forced == "cython" and _compiled is None:
    raise ImportError("RSERVER_CODEC=cython but the compiled codec (rserver.codec._cupdate) is not built")

backend: ModuleType = _pure if (_forced == "pure" or _compiled is None) else _compiled
BACKEND_NAME = "pure" if backend is _pure else "cython"

decode_updates = backend.decode_updates
encode_announce = backend.encode_announce
encode_withdraw = backend.encode_withdraw
encode_batch = backend.encode_batch
encode_eor = backend.encode_eor

__all__ = [
    "BACKENDS", "BACKEND_NAME", "backend",
    "decode_updates", "encode_announce", "encode_withdraw", "encode_batch", "encode_eor",
]
