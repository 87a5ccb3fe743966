from __future__ import annotations

import logging

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
