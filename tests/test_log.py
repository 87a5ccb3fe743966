from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pxed.log
from pxed.log import FieldsFormatter, InfoLine, info_fields, level_from_env, setup_logging

EXCHANGE = {"CLIENT_MAC": "52:54:00:aa:bb:cc", "CLIENT_ARCH": "7", "CLIENT_UUID": "", "PXE_STAGE": "offer",
            "BOOT_FILE": "efi64/syslinux.efi", "LISTENER": "dhcp"}


def test_stderr_format_keeps_structured_fields() -> None:
    rec = logging.LogRecord("pxed.daemon", logging.INFO, __file__, 1, "Proxy offer sent to %s", ("52:54:00:12:34:56",),
                            None)
    rec.CLIENT_MAC = "52:54:00:12:34:56"
    rec.PXE_STAGE = "offer"
    out = FieldsFormatter(with_time=False).format(rec)
    assert out == "INFO: Proxy offer sent to 52:54:00:12:34:56 [CLIENT_MAC=52:54:00:12:34:56 PXE_STAGE=offer]"


@pytest.mark.parametrize("value,level", [("debug", logging.DEBUG), ("notice", logging.INFO), ("err", logging.ERROR),
                                         ("bogus", logging.INFO)])
def test_level_from_env(monkeypatch: pytest.MonkeyPatch, value: str, level: int) -> None:
    monkeypatch.setenv("PXED_LOG_LEVEL", value)
    assert level_from_env() == level


@pytest.mark.integration
def test_journal_receives_structured_fields(tmp_path: Path) -> None:
    """Through systemd-python's JournalHandler into a fake journald (private mount ns)."""
    import os
    import subprocess
    import sys

    from tests.conftest import need
    from tests.lab.netns import wait_for
    from tests.lab.pxedproc import DatagramSink

    need(os.geteuid() == 0, "needs root for a private mount namespace")
    sink = DatagramSink(tmp_path / "journal.sock")
    code = ("from pxed.log import setup_logging, info_fields; import logging; "
            "assert setup_logging() == 'journal'; "
            "logging.getLogger('pxed.daemon').info('Proxy offer sent to %s', '52:54:00:aa:bb:cc', "
            "extra={'CLIENT_MAC': '52:54:00:aa:bb:cc', 'PXE_STAGE': 'offer', 'BOOT_FILE': 'lpxelinux.0', "
            "'CLIENT_UUID': ''}); "
            "info_fields(logging.getLogger('pxed.daemon'), 'Proxy offer sent to 52:54:00:aa:bb:cc', "
            "{'CLIENT_MAC': '52:54:00:aa:bb:cc', 'PXE_STAGE': 'offer', 'BOOT_FILE': 'lpxelinux.0', "
            "'CLIENT_UUID': ''}); "
            "info_fields(logging.getLogger('pxed.daemon'), 'two\\nlines', {'BOOT_FILE': 'a\\nb'}); "
            "from pxed.log import InfoLine; "
            "InfoLine(logging.getLogger('pxed.daemon'), ('Proxy offer sent to ', 0), "
            "{'CLIENT_MAC': 0, 'PXE_STAGE': 'offer', 'BOOT_FILE': 'lpxelinux.0', 'CLIENT_UUID': 1})"
            ".info(('52:54:00:aa:bb:cc', ''))")
    script = ("set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal; : > /run/systemd/journal/socket; "
              f"mount --bind {sink.path} /run/systemd/journal/socket; exec \"$@\"")
    try:
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                        sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                       env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
        wait_for(lambda: len(sink.messages) >= 4, 5, what="four journal datagrams")
    finally:
        sink.close()
    from tests.lab.pxedproc import parse_journal_datagram

    entry, direct, multiline, prepared = [parse_journal_datagram(m) for m in sink.messages]
    assert entry["MESSAGE"] == "Proxy offer sent to 52:54:00:aa:bb:cc"
    assert entry["CLIENT_MAC"] == "52:54:00:aa:bb:cc"
    assert entry["PXE_STAGE"] == "offer" and entry["BOOT_FILE"] == "lpxelinux.0"
    assert entry["SYSLOG_IDENTIFIER"] == "pxed" and entry["PRIORITY"] == "6"
    # info_fields() sends its own datagram: the same entry (the caller's CODE_* too, all on
    # line 1 of `code`), but for the message's arguments
    del entry["CODE_ARGS"]
    assert direct == entry and direct["CODE_FUNC"] == "<module>"
    assert multiline["MESSAGE"] == "two\nlines" and multiline["BOOT_FILE"] == "a\nb"
    assert prepared == direct  # InfoLine: the same entry again


@pytest.fixture
def root_logging() -> Iterator[None]:
    """setup_logging() replaces the root's handlers (pytest's too): put them back afterwards."""
    root = logging.getLogger()
    saved, level, direct = list(root.handlers), root.level, pxed.log._direct
    yield
    root.handlers[:] = saved
    root.setLevel(level)
    pxed.log._direct = direct


@pytest.mark.parametrize("with_time", [True, False])
def test_info_fields_writes_what_logging_would_to_stderr(monkeypatch: pytest.MonkeyPatch, root_logging: None,
                                                        with_time: bool) -> None:
    if with_time:
        monkeypatch.delenv("INVOCATION_ID", raising=False)
    else:
        monkeypatch.setenv("INVOCATION_ID", "x")
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    assert setup_logging(target="stderr") == "stderr"
    log = logging.getLogger("pxed.daemon")
    log.info("%s sent to %s", "Proxy offer", "52:54:00:aa:bb:cc", extra=EXCHANGE)
    info_fields(log, "Proxy offer sent to 52:54:00:aa:bb:cc", EXCHANGE)
    InfoLine(log, ("Proxy offer sent to ", 0), {**EXCHANGE, "CLIENT_MAC": 0, "CLIENT_UUID": 1}).info(
        ("52:54:00:aa:bb:cc", ""))
    through_logging, direct, prepared = out.getvalue().splitlines()
    for line in (direct, prepared):
        if with_time:  # "YYYY-mm-dd HH:MM:SS,mmm ": the lines may be a millisecond apart
            assert line[23:] == through_logging[23:] and line[:19] <= through_logging[:19] + "~"
        else:
            assert line == through_logging
    assert direct.endswith("[CLIENT_MAC=52:54:00:aa:bb:cc CLIENT_ARCH=7 PXE_STAGE=offer "
                           "BOOT_FILE=efi64/syslinux.efi LISTENER=dhcp]")


def test_info_fields_defers_to_logging_when_others_listen(monkeypatch: pytest.MonkeyPatch, root_logging: None,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A handler or filter added after setup_logging() (pytest's caplog here) still sees the record."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    setup_logging(target="stderr")
    logging.getLogger().addHandler(caplog.handler)
    info_fields(logging.getLogger("pxed.daemon"), "Proxy offer sent", EXCHANGE)
    (rec,) = caplog.records
    assert rec.getMessage() == "Proxy offer sent" and rec.CLIENT_MAC == "52:54:00:aa:bb:cc"  # type: ignore[attr-defined]
    assert rec.funcName == "test_info_fields_defers_to_logging_when_others_listen"
    assert "Proxy offer sent" in out.getvalue()
    logging.getLogger().setLevel(logging.WARNING)
    info_fields(logging.getLogger("pxed.daemon"), "not shown", EXCHANGE)
    assert "not shown" not in out.getvalue() and len(caplog.records) == 1


def test_stderr_time_is_the_stock_format_across_seconds() -> None:
    """FieldsFormatter makes the strftime part once per second; the text must not change."""
    mine = FieldsFormatter(with_time=True)
    stock = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for t in (1764555000.123, 1764555000.999, 1764555001.0005, 1764555061.5, 1764555000.5):
        rec = logging.LogRecord("pxed.daemon", logging.INFO, __file__, 1, "x %s", ("y",), None)
        rec.created, rec.msecs = t, float(int((t - int(t)) * 1000))
        assert mine.format(rec) == stock.format(rec)


@pytest.mark.parametrize("values", [("a{0}b", "", "}{"), ("", "x", ""), ("", "", "")])
def test_info_line_is_info_fields_with_the_values_filled_in(monkeypatch: pytest.MonkeyPatch, root_logging: None,
                                                           values: tuple[str, str, str]) -> None:
    """Braces in text or values, empty values (left out on stderr), constant and per-call fields in any order."""
    monkeypatch.setenv("INVOCATION_ID", "x")
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    setup_logging(target="stderr")
    log = logging.getLogger("pxed.daemon")
    fields: dict[str, str | int] = {"LISTENER": "{1}", "CLIENT_IP": 2, "CLIENT_ARCH": "", "CLIENT_MAC": 0,
                                    "REASON": 1}
    line = InfoLine(log, ("{x} ", 1, " and ", 0, "}"), fields)
    line.info(values)
    info_fields(log, f"{{x}} {values[1]} and {values[0]}}}", line.fields(values))
    prepared, direct = out.getvalue().splitlines()
    assert prepared == direct and line.message(values) == f"{{x}} {values[1]} and {values[0]}}}"


def test_info_line_defers_to_logging_when_others_listen(monkeypatch: pytest.MonkeyPatch, root_logging: None,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    setup_logging(target="stderr")
    logging.getLogger().addHandler(caplog.handler)
    InfoLine(logging.getLogger("pxed.daemon"), ("sent to ", 0), {"CLIENT_MAC": 0, "PXE_STAGE": "ack"}).info(("m",))
    (rec,) = caplog.records
    assert rec.getMessage() == "sent to m" and rec.CLIENT_MAC == "m" and rec.PXE_STAGE == "ack"  # type: ignore[attr-defined]
    assert rec.funcName == "test_info_line_defers_to_logging_when_others_listen"


def test_a_journal_that_does_not_keep_up_loses_lines_not_the_loop(monkeypatch: pytest.MonkeyPatch,
                                                                   root_logging: None, tmp_path: Path) -> None:
    """journald's queue full: the line is dropped (the DHCP loop never waits), and once there is
    room again a warning entry says how many were lost."""
    import socket
    import threading

    from tests.lab.pxedproc import parse_journal_datagram

    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(tmp_path / "journal.sock"))
    monkeypatch.setattr(pxed.log, "JOURNAL_SOCKET", tmp_path / "journal.sock")
    assert setup_logging(target="journal") == "journal"
    line = InfoLine(logging.getLogger("pxed.daemon"), ("sent to ", 0), {"CLIENT_MAC": 0})
    writer = threading.Thread(target=lambda: [line.info((f"m{i}",)) for i in range(2000)], daemon=True)
    writer.start()
    writer.join(30)
    assert not writer.is_alive(), "logging blocked on a full journal socket"
    sink.setblocking(False)
    got = []
    with pytest.raises(BlockingIOError):
        while True:
            got.append(parse_journal_datagram(sink.recv(65536)))
    assert 0 < len(got) < 2000 and got[0]["MESSAGE"] == "sent to m0"
    line.info(("after",))
    warning, after = parse_journal_datagram(sink.recv(65536)), parse_journal_datagram(sink.recv(65536))
    assert int(warning["LINES_DROPPED"]) == 2000 - len(got) and warning["PRIORITY"] == "4"
    assert "log lines dropped" in warning["MESSAGE"] and after["MESSAGE"] == "sent to after"
    sink.close()
