"""Structured logs: the seed daemon's fields, human and JSON renderings."""
import io
import json
import logging

import pytest

from rserver import log as rlog


@pytest.fixture
def stream():
    s = io.StringIO()
    handler = rlog.configure("human", "debug", s)
    yield s
    logging.getLogger(rlog.ROOT).removeHandler(handler)


def _json_stream():
    s = io.StringIO()
    h = rlog.configure("json", "debug", s)
    return s, h


def test_human_line_carries_session_fields_in_seed_order(stream):
    lg = rlog.get_logger("session", neighbor="127.0.0.3", neighbor_name="r1")
    lg.info("fsm transition open confirm -> established", fsm_state="open confirm",
            conn_id="b5e74790", direction="inbound", event="keepalive message")
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert " INFO  fsm transition open confirm -> established  " in line
    tail = line.split("  ", 2)[-1]
    # the seed vocabulary comes first and in a fixed order; values with spaces are quoted
    assert tail == ('neighbor=127.0.0.3 neighbor_name=r1 fsm_state="open confirm" '
                    'conn_id=b5e74790 direction=inbound event="keepalive message"')


def test_json_lines_are_one_object_per_event():
    s, h = _json_stream()
    try:
        lg = rlog.get_logger("dispatcher").bind(listen_address="127.0.0.1:179")
        lg.warning("connection from unknown address closed", peer="127.0.9.9:5000")
        lg.debug("second")
    finally:
        logging.getLogger(rlog.ROOT).removeHandler(h)
    lines = s.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "warn"
    assert first["unit"] == "dispatcher"
    assert first["msg"] == "connection from unknown address closed"
    assert first["listen_address"] == "127.0.0.1:179"
    assert first["peer"] == "127.0.9.9:5000"
    assert json.loads(lines[1])["msg"] == "second"


def test_bind_does_not_mutate_parent(stream):
    parent = rlog.get_logger("session", neighbor="127.0.1.1")
    child = parent.bind(conn_id="abc")
    assert "conn_id" not in parent.fields
    assert child.fields == {"neighbor": "127.0.1.1", "conn_id": "abc"}


def test_level_filters(stream):
    rlog.configure("human", "warning", stream)
    rlog.get_logger("x").info("hidden")
    rlog.get_logger("x").error("shown")
    out = stream.getvalue()
    assert "hidden" not in out and "shown" in out


@pytest.mark.parametrize("fmt,level", [("xml", "info"), ("human", "chatty")])
def test_configure_rejects_bad_values(fmt, level):
    with pytest.raises(ValueError) as exc:
        rlog.configure(fmt, level, io.StringIO())
    assert (fmt if fmt == "xml" else level) in str(exc.value)
