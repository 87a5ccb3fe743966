from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pxed.log import FieldsFormatter, level_from_env


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
    from tests.lab.pxedproc import DatagramSink, wait_for

    need(os.geteuid() == 0, "needs root for a private mount namespace")
    sink = DatagramSink(tmp_path / "journal.sock")
    code = ("from pxed.log import setup_logging; import logging; "
            "assert setup_logging() == 'journal'; "
            "logging.getLogger('pxed.daemon').info('Proxy offer sent to %s', '52:54:00:aa:bb:cc', "
            "extra={'CLIENT_MAC': '52:54:00:aa:bb:cc', 'PXE_STAGE': 'offer', 'BOOT_FILE': 'lpxelinux.0'})")
    script = ("set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal; : > /run/systemd/journal/socket; "
              f"mount --bind {sink.path} /run/systemd/journal/socket; exec \"$@\"")
    try:
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                        sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                       env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
        wait_for(lambda: sink.messages, 5, what="a journal datagram")
    finally:
        sink.close()
    from tests.lab.pxedproc import parse_journal_datagram

    (entry,) = [parse_journal_datagram(m) for m in sink.messages]
    assert entry["MESSAGE"] == "Proxy offer sent to 52:54:00:aa:bb:cc"
    assert entry["CLIENT_MAC"] == "52:54:00:aa:bb:cc"
    assert entry["PXE_STAGE"] == "offer" and entry["BOOT_FILE"] == "lpxelinux.0"
    assert entry["SYSLOG_IDENTIFIER"] == "pxed" and entry["PRIORITY"] == "6"


def test_stderr_time_is_the_stock_format_across_seconds() -> None:
    """FieldsFormatter makes the strftime part once per second; the text must not change."""
    mine = FieldsFormatter(with_time=True)
    stock = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for t in (1764555000.123, 1764555000.999, 1764555001.0005, 1764555061.5, 1764555000.5):
        rec = logging.LogRecord("pxed.daemon", logging.INFO, __file__, 1, "x %s", ("y",), None)
        rec.created, rec.msecs = t, float(int((t - int(t)) * 1000))
        assert mine.format(rec) == stock.format(rec)
