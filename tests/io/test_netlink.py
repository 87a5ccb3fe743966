"""The interface as pxed sees it: the cold-start look (ioctls) agrees with netlink's snapshot."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO
from tests.lab.netns import Segment

pytestmark = pytest.mark.integration

LOOK = """
import json, socket, sys
from pxed.io.netlink import first_look, snapshot
def d(i):
    return None if i is None else {"index": i.index, "up": i.up, "addresses": [str(a) for a in i.addresses]}
held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # as pxed does, through the socket it holds
wrong = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # SIOCGIFADDR is an IPv4 socket's ioctl
out = {n: [d(first_look(n)), d(snapshot(n)), d(first_look(n, held))] for n in sys.argv[1:]}
out["wrong"] = d(first_look(sys.argv[1], wrong))
print(json.dumps(out))
"""


def test_first_look_agrees_with_the_netlink_snapshot(segment: Segment) -> None:
    srv = segment.srv
    srv.ip("addr", "add", "10.77.3.1/16", "dev", "lab0")  # a second address: the snapshot has both
    srv.ip("link", "add", "bare0", "type", "veth", "peer", "name", "bare1")  # no address, down
    out = json.loads(srv.run([sys.executable, "-c", LOOK, "lab0", "bare0", "lo", "absent0"], cwd=REPO).stdout)
    first, snap, held = out["lab0"]
    assert first == held
    assert first["index"] == snap["index"] and first["up"] is snap["up"] is True
    assert first["addresses"] == snap["addresses"][:1] == ["10.77.0.1/24"]
    assert "10.77.3.1/16" in snap["addresses"]
    first, snap, held = out["bare0"]
    assert first == snap == held and first["addresses"] == [] and first["up"] is False
    assert out["lo"][0] == out["lo"][1] == out["lo"][2]
    assert out["absent0"] == [None, None, None]
    assert out["wrong"] is None  # a failed look is no look, never an exception
