"""Lab tools: a small asyncio BGP speaker (``speaker.Speaker``) that plays IXP members /
route-server clients against rserver or another daemon, and a multi-process fleet of
speakers (``fleet``) used by the end-to-end benchmark ``bench/fulltable.py``."""
from __future__ import annotations

from .speaker import BGPSessionError, Speaker

__all__ = ["Speaker", "BGPSessionError"]
