"""`make soak` end to end, once each way: a boot that reaches Linux counts as ok, and one that
does not (a timeout too short for it) prints the lab summary, the timeline and the capture
summary, keeps the capture and serial log, and makes the soak fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import soak
from tests.conftest import need, need_tool
from tests.lab.netns import can_run_lab
from tests.lab.qemu import KERNEL

pytestmark = [pytest.mark.qemu, pytest.mark.integration, pytest.mark.slow]


def test_soak_counts_a_good_boot_and_reports_a_failed_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reason = can_run_lab()
    need(reason is None, reason or "")
    need_tool("qemu-system-x86_64", "dumpcap", "tshark", "dnsmasq", "in.tftpd", "lighttpd")
    need(KERNEL.exists(), "Debian netboot kernel missing (debian-installer-12-netboot-amd64)")
    assert soak.main(["--runs", "1", "--firmware", "bios", "--out", str(tmp_path / "good")]) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "good/results.jsonl").read_text().splitlines()]
    assert row["ok"] is True and row["seconds"] > 0
    assert "bios: 0/1 failed" in capsys.readouterr().out

    assert soak.main(["--runs", "1", "--firmware", "bios", "--timeout", "3", "--out", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr()
    assert "bios: 1/1 failed" in out.out
    err = out.err
    assert "==== bios boot 1 FAILED" in err and "---- timeline" in err and "---- capture of the lab bridge" in err, err
    assert "TCP resets" in err and "last exchanges:" in err
    assert "pxed's journal" in err  # the lab summary, with the boot server's journal
    kept = tmp_path / "bad/bios-1"
    assert (kept / "lab.pcapng").stat().st_size > 0 and list(kept.glob("*serial.log")), list(kept.iterdir())
