"""Collision resolution (RFC 4271 §6.8, RFC 6286 §2.3): rserver.session.collision."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from rserver.session.collision import (
    CollisionDecision, ConnectionInfo, Direction, DroppedConnections, format_id, resolve_collision,
)
from rserver.session.fsm import State

IN, OUT = Direction.INBOUND, Direction.OUTBOUND


def conns(existing_dir: Direction, state: State = State.OPEN_CONFIRM):
    new_dir = OUT if existing_dir is IN else IN
    return ConnectionInfo("A", existing_dir, state), ConnectionInfo("B", new_dir, State.OPEN_SENT)


@pytest.mark.parametrize("existing_dir", [IN, OUT])
def test_lower_local_id_keeps_the_peers_connection(existing_dir):
    existing, new = conns(existing_dir)
    d = resolve_collision(1, 2, existing, new)
    assert d.keep_direction is IN and d.close_direction is OUT
    assert d.keep == (existing.conn if existing_dir is IN else new.conn)
    assert (d.code, d.subcode) == (6, 7) and d.rule == "bgp-id"
    assert d.explanation.startswith("local id 0.0.0.1 < remote id 0.0.0.2: keeping the inbound connection")
    assert "(initiated by the peer)" in d.explanation


@pytest.mark.parametrize("existing_dir", [IN, OUT])
def test_higher_local_id_keeps_our_connection(existing_dir):
    existing, new = conns(existing_dir)
    d = resolve_collision(2, 1, existing, new)
    assert d.keep_direction is OUT and d.close_direction is IN
    assert d.keep == (existing.conn if existing_dir is OUT else new.conn)
    assert d.explanation.startswith("local id 0.0.0.2 > remote id 0.0.0.1: keeping the outbound connection")
    assert "(initiated by us)" in d.explanation


def test_seed001_line30_is_not_repeated():
    """Seed 001 kept the right connection but logged 'local system wins with higher RID (1 > 2)'."""
    existing = ConnectionInfo("5a7be0d5", IN, State.OPEN_CONFIRM)
    new = ConnectionInfo("3f6bbac8", OUT, State.OPEN_SENT)
    d = resolve_collision(1, 2, existing, new)
    assert d.keep == "5a7be0d5" and d.close == "3f6bbac8"
    assert "1 > 2" not in d.explanation and "0.0.0.1 < 0.0.0.2" not in d.explanation
    assert "local id 0.0.0.1 < remote id 0.0.0.2" in d.explanation


def test_ids_compare_as_unsigned():
    existing, new = conns(IN)
    d = resolve_collision(0x80000000, 0x7FFFFFFF, existing, new)   # negative if read as signed
    assert d.keep_direction is OUT
    assert "128.0.0.0 > remote id 127.255.255.255" in d.explanation


def test_established_wins_unless_configured():
    existing, new = conns(IN, State.ESTABLISHED)
    d = resolve_collision(2, 1, existing, new)          # the ids would favour the new (outbound) one
    assert d.keep == "A" and d.rule == "established" and "established" in d.explanation
    d = resolve_collision(2, 1, existing, new, established_resolution=True)
    assert d.keep == "B" and d.rule == "bgp-id"


def test_same_direction_keeps_the_newer():
    d = resolve_collision(1, 2, ConnectionInfo(1, IN, State.OPEN_CONFIRM), ConnectionInfo(2, IN, State.OPEN_SENT))
    assert d.keep == 2 and d.close == 1 and d.rule == "same-direction"


def test_equal_ids_use_the_as_numbers():
    existing, new = conns(IN)
    d = resolve_collision(7, 7, existing, new, local_as=65002, remote_as=65001)
    assert d.keep_direction is OUT and d.rule == "as-number" and "RFC 6286" in d.explanation
    d = resolve_collision(7, 7, existing, new, local_as=65001, remote_as=65002)
    assert d.keep_direction is IN
    d = resolve_collision(7, 7, existing, new)
    assert d.keep == "A" and d.rule == "tie"


def test_plain_strings_are_accepted_for_direction():
    d = resolve_collision(1, 2, ConnectionInfo("a", "outbound", 5), ConnectionInfo("b", "inbound", 4))
    assert isinstance(d, CollisionDecision) and d.keep == "b"


def test_format_id():
    assert format_id(0xC0000201) == "192.0.2.1"


@given(l_id=st.integers(0, 2**32 - 1), r_id=st.integers(0, 2**32 - 1),
       l_as=st.integers(1, 2**32 - 1), r_as=st.integers(1, 2**32 - 1), ours_first=st.booleans())
def test_both_sides_keep_the_same_tcp_connection(l_id, r_id, l_as, r_as, ours_first):
    """Run the rule on both routers: they must keep the same TCP connection.

    Connection X is the one we initiated (outbound for us, inbound for the peer), Y
    the one the peer initiated. Which one each side already had is independent."""
    x_us, y_us = ConnectionInfo("X", OUT, 5), ConnectionInfo("Y", IN, 4)
    x_them, y_them = ConnectionInfo("X", IN, 5), ConnectionInfo("Y", OUT, 4)
    ours = resolve_collision(l_id, r_id, *((x_us, y_us) if ours_first else (y_us, x_us)),
                             local_as=l_as, remote_as=r_as)
    theirs = resolve_collision(r_id, l_id, *((y_them, x_them) if ours_first else (x_them, y_them)),
                               local_as=r_as, remote_as=l_as)
    if ours.rule != "tie":
        assert ours.keep == theirs.keep
    assert {ours.keep, ours.close} == {"X", "Y"}


def test_dropped_connections_is_bounded():
    d = DroppedConnections(size=2)
    d.add(1, "collision")
    d.add(2, "x")
    d.add(3, "y")
    assert 1 not in d and d.why(3) == "y" and d.why(2) == "x"
    d.discard(3)
    assert 3 not in d
    d.add(None, "ignored")
    assert None not in d
