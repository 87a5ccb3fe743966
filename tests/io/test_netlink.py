"""The interface as pxed sees it: the cold-start look (ioctls) agrees with netlink's snapshot."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO
from tests.lab.netns import Segment

pytestmark = pytest.mark.integration

LOOK = """
import json, sys
from pxed.io.netlink import first_look, snapshot
def d(i):
    return None if i is None else {"index": i.index, "up": i.up, "addresses": [str(a) for a in i.addresses]}
print(json.dumps({n: [d(first_look(n)), d(snapshot(n))] for n in sys.argv[1:]}))
"""


def test_first_look_agrees_with_the_netlink_snapshot(segment: Segment) -> None:
    srv = segment.srv
    srv.ip("addr", "add", "10.77.3.1/16", "dev", "lab0")  # a second address: the snapshot has both
    srv.ip("link", "add", "bare0", "type", "veth", "peer", "name", "bare1")  # no address, down
    out = json.loads(srv.run([sys.executable, "-c", LOOK, "lab0", "bare0", "lo", "absent0"], cwd=REPO).stdout)
    first, snap = out["lab0"]
    assert first["index"] == snap["index"] and first["up"] is snap["up"] is True
    assert first["addresses"] == snap["addresses"][:1] == ["10.77.0.1/24"]
    assert "10.77.3.1/16" in snap["addresses"]
    first, snap = out["bare0"]
    assert first == snap and first["addresses"] == [] and first["up"] is False
    assert out["lo"][0] == out["lo"][1]
    assert out["absent0"] == [None, None]
