"""The lab's own housekeeping: the system tests' debootstrap cache does not grow for ever; the one
polling loop; a lab that fails says what it saw and still closes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, need, need_tool
from tests.lab.netns import can_run_lab, wait_for, wait_for_async
from tests.lab.network import LabNetwork
from tests.lab.nspawn import PRUNE_AFTER, SUITE, prune


def test_prune_removes_only_long_unused_trees_and_dead_builds(tmp_path: Path) -> None:
    now = 2_000_000_000.0

    def tree(name: str, age: float, complete: bool = True) -> Path:
        d = tmp_path / name
        d.mkdir()
        stamp = d / (".pxed-tree-complete" if complete else "partial")
        stamp.write_text("")
        os.utime(stamp, (now - age, now - age))
        os.utime(d, (now - age, now - age))
        return d

    current = tree(f"{SUITE}-current", PRUNE_AFTER * 3)  # the one asked for: kept however old
    recent = tree(f"{SUITE}-recent", PRUNE_AFTER / 2)  # another branch's tree, in use
    old = tree(f"{SUITE}-old", PRUNE_AFTER + 60)
    dead = tree(".build-abc-123", 2 * 86400, complete=False)
    running = tree(".build-def-456", 600, complete=False)  # a build in progress elsewhere
    other = tree("not-ours", PRUNE_AFTER * 3, complete=False)
    (tmp_path / ".lock").write_text("")
    assert sorted(prune(tmp_path, keep=current, now=now)) == sorted([old, dead])
    assert all(d.exists() for d in (current, recent, running, other)) and not old.exists() and not dead.exists()


def test_wait_for_returns_the_first_truthy_value_or_times_out() -> None:
    calls: list[int] = []

    def third() -> list[int]:
        calls.append(1)
        return calls if len(calls) >= 3 else []

    assert wait_for(third, 5, interval=0) == [1, 1, 1]
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out after 0s waiting for nothing"):
        wait_for(lambda: None, 0.2, what="nothing")
    assert 0.2 <= time.monotonic() - started < 2
    assert wait_for(lambda: "at once", 0) == "at once"  # the predicate runs even with no time to wait


def test_wait_for_gives_up_when_it_can_no_longer_happen_but_takes_a_last_look() -> None:
    with pytest.raises(TimeoutError, match="gave up waiting for the exit"):
        wait_for(lambda: False, 60, what="the exit", unless=lambda: True)
    late = iter([None, "done"])  # true only at the look after `unless`
    assert wait_for(lambda: next(late), 60, unless=lambda: True) == "done"
    assert asyncio.run(wait_for_async(lambda: "x", 1)) == "x"
    with pytest.raises(TimeoutError):
        asyncio.run(wait_for_async(lambda: None, 0.1, interval=0.01))


class FailingLab(LabNetwork):
    closed = False

    def prepare(self) -> None:
        (self.workdir / "server.log").write_text("first line\nthe server's last words\n")
        raise RuntimeError("prepare failed")

    def journals(self) -> dict[str, str]:
        raise OSError("no journal here")

    def close(self) -> None:
        FailingLab.closed = True
        super().close()


def test_a_failing_lab_writes_its_summary_and_closes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError, match="prepare failed"), FailingLab(tmp_path) as fl:
        fl.start()
    err = capsys.readouterr().err
    assert FailingLab.closed
    assert err.startswith(f"==== FailingLab lab {fl.lab.prefix}-*, work directory {tmp_path}"), err
    assert "---- server.log\nfirst line\nthe server's last words" in err
    assert "(could not be read: OSError('no journal here'))" in err and err.endswith("==== end of the lab summary\n")
    with pytest.raises(KeyboardInterrupt), FailingLab(tmp_path):
        raise KeyboardInterrupt  # an interrupt is no failure: no summary
    assert capsys.readouterr().err == ""


class ServerlessLab(LabNetwork):
    """The network comes up (the network's DHCP server, the capture), then the boot server fails."""

    def start_servers(self) -> None:
        assert self.seg is not None
        # one DHCP exchange on the wire: a scripted client's DISCOVER, the network's OFFER
        self.seg.cli.run([sys.executable, "-m", "tests.lab.pxeclient", "--mac", "52:54:00:00:00:77", "--wait", "2",
                          "--json"], cwd=REPO, env={**os.environ, "PYTHONPATH": os.fspath(REPO)})
        raise RuntimeError("no boot server")


@pytest.mark.integration
def test_a_failed_labs_summary_has_what_the_wire_saw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reason = can_run_lab()
    need(reason is None, reason or "")
    need_tool("dumpcap", "tshark", "dnsmasq", "radvd")
    tmp_path.chmod(0o755)
    with pytest.raises(RuntimeError, match="no boot server"), ServerlessLab(tmp_path) as lab:
        lab.start()
    err = capsys.readouterr().err
    assert f"---- capture of the lab bridge ({tmp_path / 'lab.pcapng'})" in err, err
    assert "TCP resets 0, retransmissions 0" in err
    assert "DHCP Discover" in err and "DHCP Offer" in err, err  # the last exchanges, from the capture
