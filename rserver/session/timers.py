"""Session timers, sans-IO: names, jitter, idle-hold back-off and a deadline table.

The FSM (``rserver.session.fsm``) never sleeps: it emits ``StartTimer`` /
``StopTimer`` actions and is told about expiries by ``*_Expires`` events. Whoever
drives it (the asyncio session worker, or a test with a fake clock) keeps the
deadlines; :class:`Timers` is a small deadline table that does exactly that, so
the worker and the tests share one implementation.

Timer values (RFC 4271 §10 and §8.2.2):

* ConnectRetry: 120 s suggested; configurable.
* Hold: the negotiated hold time; while in OpenSent a "large value", 4 minutes
  suggested (§8.2.2) -- 240 s here.
* Keepalive: one third of the negotiated hold time (§4.4, §10).
* DelayOpen: optional (§8.1.1 attribute DelayOpen); 0 disables it.
* IdleHold: the "peer oscillation damping" of §8.1.1 (DampPeerOscillations),
  whose method §8.2.2 leaves "outside the scope": here an exponential back-off,
  see :class:`IdleHoldBackoff`.

Jitter (RFC 4271 §10): "the base value ... SHOULD be multiplied by a random
factor which is uniformly distributed in the range from 0.75 to 1.0". The random
source is injected (``random.Random``) so tests are reproducible.
"""
from __future__ import annotations

import random
from enum import StrEnum
from typing import Hashable, Iterable, Optional

import msgspec

__all__ = [
    "TimerName", "PER_CONNECTION", "PER_PEER", "StartTimer", "StopTimer", "jittered", "JITTER_RANGE",
    "IdleHoldBackoff", "Timers",
    "DEFAULT_CONNECT_RETRY", "DEFAULT_OPEN_HOLD", "DEFAULT_HOLD_TIME",
]

DEFAULT_CONNECT_RETRY = 120.0   # RFC 4271 §10
DEFAULT_OPEN_HOLD = 240.0       # RFC 4271 §8.2.2: "A HoldTimer value of 4 minutes is suggested"
DEFAULT_HOLD_TIME = 90          # RFC 4271 §10
JITTER_RANGE = (0.75, 1.0)      # RFC 4271 §10


class TimerName(StrEnum):
    """The five FSM timers (RFC 4271 §8). Values are log-friendly."""

    CONNECT_RETRY = "connect retry"
    HOLD = "hold"
    KEEPALIVE = "keepalive"
    DELAY_OPEN = "delay open"
    IDLE_HOLD = "idle hold"


#: timers that belong to one TCP connection (the others belong to the peer); a tuple,
#: so that stopping them all emits the StopTimer actions in a fixed order
PER_CONNECTION = (TimerName.HOLD, TimerName.KEEPALIVE, TimerName.DELAY_OPEN)
PER_PEER = (TimerName.CONNECT_RETRY, TimerName.IDLE_HOLD)


class StartTimer(msgspec.Struct, frozen=True):
    """Action: (re)start timer ``name`` to expire ``seconds`` from now.

    Starting a running timer restarts it. ``conn`` identifies the connection for
    the per-connection timers (Hold, Keepalive, DelayOpen) and is None for the
    per-peer ones (ConnectRetry, IdleHold). Feed the expiry back with the same
    ``conn``.
    """

    name: TimerName
    seconds: float
    conn: Optional[Hashable] = None


class StopTimer(msgspec.Struct, frozen=True):
    """Action: stop timer ``name`` (of connection ``conn``) if it runs."""

    name: TimerName
    conn: Optional[Hashable] = None


def jittered(base: float, rng: random.Random, lo: float = JITTER_RANGE[0],
             hi: float = JITTER_RANGE[1]) -> float:
    """``base`` times a factor drawn uniformly from [lo, hi] (RFC 4271 §10)."""
    if base <= 0:
        return 0.0
    return base * rng.uniform(lo, hi)


class IdleHoldBackoff:
    """Exponential back-off for restarting a flapping peer (RFC 4271 §8.1.1
    DampPeerOscillations; the method is left to the implementation by §8.2.2).

    Each automatic restart waits ``current`` seconds times a jitter factor from
    ``jitter`` (RFC 4271 §10), then ``current`` doubles up to ``maximum``. A session
    that stayed Established for at least ``stable_after`` seconds, or an operator's
    ManualStart, resets ``current`` to ``initial``: a peer that flaps is damped, a
    peer that failed once long ago is not.
    """

    def __init__(self, initial: float = 5.0, maximum: float = 300.0,
                 stable_after: float = 300.0, rng: Optional[random.Random] = None,
                 jitter: tuple[float, float] = JITTER_RANGE):
        if initial < 0 or maximum < initial:
            raise ValueError("idle hold back-off needs 0 <= initial <= maximum")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.stable_after = float(stable_after)
        self.rng = rng if rng is not None else random.Random()
        self.jitter = jitter
        self.current = self.initial
        self._up_since: Optional[float] = None

    def next_delay(self) -> float:
        """The delay before the next automatic restart; advances the back-off."""
        delay = jittered(self.current, self.rng, *self.jitter)
        self.current = min(self.current * 2, self.maximum) if self.current else 0.0
        return delay

    def reset(self) -> None:
        self.current = self.initial

    def session_up(self, now: float) -> None:
        self._up_since = now

    def session_down(self, now: float) -> None:
        """Reset the back-off if the session that just ended had been stable."""
        if self._up_since is not None and now - self._up_since >= self.stable_after:
            self.reset()
        self._up_since = None


class Timers:
    """A deadline table for the FSM's timer actions (no clock of its own).

    ``apply(actions, now)`` records StartTimer/StopTimer actions (others are
    ignored); ``next_deadline()`` tells the driver how long it may sleep;
    ``expired(now)`` pops the timers due by ``now`` in deadline order, as
    ``(name, conn)`` pairs to feed back to the FSM (``Fsm.timer_expired``).
    """

    def __init__(self) -> None:
        self._deadlines: dict[tuple[TimerName, Optional[Hashable]], float] = {}

    def apply(self, actions: Iterable[object], now: float) -> None:
        for a in actions:
            if isinstance(a, StartTimer):
                self._deadlines[(a.name, a.conn)] = now + a.seconds
            elif isinstance(a, StopTimer):
                self._deadlines.pop((a.name, a.conn), None)

    def next_deadline(self) -> Optional[float]:
        return min(self._deadlines.values(), default=None)

    def expired(self, now: float) -> list[tuple[TimerName, Optional[Hashable]]]:
        due = sorted(((t, k) for k, t in self._deadlines.items() if t <= now), key=lambda x: x[0])
        for _, key in due:
            del self._deadlines[key]
        return [key for _, key in due]

    def discard(self, name: TimerName, conn: Optional[Hashable] = None) -> None:
        """Forget a timer (e.g. its expiry was delivered by other means)."""
        self._deadlines.pop((name, conn), None)

    def running(self, name: TimerName, conn: Optional[Hashable] = None) -> bool:
        return (name, conn) in self._deadlines

    def deadline(self, name: TimerName, conn: Optional[Hashable] = None) -> Optional[float]:
        return self._deadlines.get((name, conn))

    def __len__(self) -> int:
        return len(self._deadlines)
