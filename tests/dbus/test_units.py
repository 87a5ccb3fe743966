"""The D-Bus layer's pure parts: error names, value conversion, fd checks, the error
boundary, the client tracker, and the shipped interface XML against what the objects
introspect (no bus needed)."""

from __future__ import annotations

import asyncio
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import DBusError, Variant

from pxed.dbus import names
from pxed.dbus.interface import to_vardict, variant
from pxed.dbus.server import JobObject, ManagerObject, import_options
from pxed.errors import AccessDenied, InvalidImage, NotFound, PxedError, all_errors
from pxed.images.importer import check_fd as check_image_fd
from pxed.model import JobState
from pxed.service import JobInfo
from pxed.service.clients import ClientRecord, ClientTracker
from tests.conftest import REPO

ERR = "org.pxed.Pxed1.Error."


def test_every_error_has_a_name_that_maps_back() -> None:
    for cls in all_errors():
        name = names.ERROR_PREFIX + cls.dbus_name
        back = names.error_class(name)
        assert back is not None, name
        assert back.exit_code == cls.exit_code, (cls, back)
    assert names.error_class(ERR + "InvalidImage") is InvalidImage
    assert names.error_class("org.freedesktop.DBus.Error.AccessDenied") is AccessDenied
    assert names.error_class("org.example.Nope") is None
    assert names.error_name(NotFound("x")) == ERR + "NotFound"


def test_variants_follow_one_rule() -> None:
    d = to_vardict({"s": "x", "b": True, "i": 5, "f": 1.5, "none": None, "l": ["a"], "empty": [],
                    "nested": {"k": 1}, "records": [{"a": "b"}]})
    assert {k: v.signature for k, v in d.items()} == {
        "s": "s", "b": "b", "i": "x", "f": "d", "l": "as", "empty": "as", "nested": "a{sv}", "records": "aa{sv}"}
    assert d["nested"].value == {"k": Variant("x", 1)}
    assert variant(float("nan")).value == 0.0
    with pytest.raises(TypeError):
        variant(object())


def test_import_options() -> None:
    opts = import_options({"title": Variant("s", "T"), "memdisk": Variant("b", False)})
    assert (opts.title, opts.memdisk) == ("T", False)
    assert (import_options({}).title, import_options({}).memdisk) == (None, None)
    with pytest.raises(PxedError, match="unknown import option"):
        import_options({"colour": Variant("s", "red")})
    with pytest.raises(PxedError, match="must have type 'b'"):
        import_options({"memdisk": Variant("s", "yes")})


def test_fd_checks(tmp_path: Path) -> None:
    iso = tmp_path / "a.iso"
    iso.write_bytes(b"\0" * 40960)
    fds: list[int] = []

    def fd(path: str | Path, flags: int = os.O_RDONLY) -> int:
        fds.append(os.open(path, flags))
        return fds[-1]

    try:
        assert check_image_fd(fd(iso), 1 << 20) == 40960
        r, w = os.pipe()
        fds += [r, w]
        for bad, text in ((r, "a pipe"), (fd("/dev/zero"), "a device"), (fd(tmp_path), "a directory"),
                          (fd(iso, os.O_WRONLY), "not open for reading"), (fd(iso, os.O_PATH), "not open for reading")):
            with pytest.raises(PxedError, match=text) as e:
                check_image_fd(bad, 1 << 20)
            assert e.value.dbus_name == "InvalidArgument"
        with pytest.raises(PxedError) as e:
            check_image_fd(fd(iso), 40959)
        assert e.value.dbus_name == "TooLarge" and "MaxSize=" in str(e.value)
        small = tmp_path / "s.iso"
        small.write_bytes(b"x" * 100)
        with pytest.raises(PxedError) as e:
            check_image_fd(fd(small), 1 << 20)
        assert e.value.dbus_name == "NotAnIso"
    finally:
        for f in fds:
            os.close(f)


class Broken:
    """A service whose reads fail: one with a PxedError, one with a bug."""

    def list_images(self) -> Any:
        raise RuntimeError("secret /root/path detail")

    def get_image(self, name: str) -> Any:
        raise NotFound(f"no image named {name!r}", hint="'pxectl list' shows the images")


def _impl(obj: object, attr: str) -> Any:
    return type(obj).__dict__[attr].__dict__["__DBUS_METHOD"].fn


def test_error_boundary(caplog: pytest.LogCaptureFixture) -> None:
    m = ManagerObject(Broken(), None)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR), pytest.raises(DBusError) as e:
        asyncio.run(_impl(m, "list_images")(m))
    assert (e.value.type, e.value.text) == (ERR + "Internal", "internal error")
    assert "secret /root/path detail" in caplog.text  # logged for the admin, not sent to the caller
    with pytest.raises(DBusError) as e:
        asyncio.run(_impl(m, "get_image")(m, "x"))
    assert (e.value.type, e.value.text) == (ERR + "NotFound", "no image named 'x' ('pxectl list' shows the images)")


def test_tracker_keeps_the_latest_per_mac_bounded() -> None:
    t = ClientTracker(capacity=3)
    t.record("52:54:00:00:00:01", 0, "offer", "lpxelinux.0", 1.0)
    t.record("52:54:00:00:00:02", 7, "offer", "efi64/syslinux.efi", 2.0)
    t.record("52:54:00:00:00:01", 0, "ack", "lpxelinux.0", 3.0)
    t.record("52:54:00:00:00:03", 9, "offer", "efi64/syslinux.efi", 4.0)
    t.record("52:54:00:00:00:04", 0, "offer", "lpxelinux.0", 5.0)
    recent = t.recent()
    assert [c.mac for c in recent] == ["52:54:00:00:00:04", "52:54:00:00:00:03", "52:54:00:00:00:01"]
    assert recent[2].stage == "ack" and recent[2].count == 2
    t.record("52:54:00:aa:00:05", 0, "offer", "x", 6.0)
    t.record("52:54:00:AA:00:05", 0, "ack", "x", 7.0)  # the same MAC, any case
    assert t.recent()[0] == ClientRecord("52:54:00:aa:00:05", 0, "ack", "x", 7.0, 2)
    assert len(t) == 3
    with pytest.raises(ValueError):
        ClientTracker(0)


def _structure(root: ET.Element, interface: str) -> dict[str, Any]:
    (iface,) = [i for i in root.iter("interface") if i.get("name") == interface]
    out: dict[str, Any] = {}
    for m in iface.iter("method"):
        out["method " + m.get("name", "")] = [(a.get("direction", "in"), a.get("type"),
                                               a.get("name") if a.get("direction", "in") == "in" else None)
                                              for a in m.iter("arg")]
    for s in iface.iter("signal"):
        out["signal " + s.get("name", "")] = [a.get("type") for a in s.iter("arg")]
    for p in iface.iter("property"):
        out["property " + p.get("name", "")] = (p.get("type"), p.get("access"))
    return out


@pytest.mark.parametrize("obj,interface", [
    (ManagerObject(None, None), "org.pxed.Pxed1.Manager"),  # type: ignore[arg-type]
    (JobObject(None, None, JobInfo(1, "x", JobState.QUEUED, 0, 0, ":1.1")),  # type: ignore[arg-type]
     "org.pxed.Pxed1.Job"),
])
def test_shipped_xml_matches_the_objects(obj: Any, interface: str) -> None:
    shipped = ET.parse(REPO / "packaging" / "dbus" / f"{interface}.xml").getroot()
    live = ET.fromstring(f"<node>{ET.tostring(obj.introspect().to_xml()).decode()}</node>")
    assert _structure(live, interface) == _structure(shipped, interface)
    text = (REPO / "packaging" / "dbus" / f"{interface}.xml").read_text()
    for member in _structure(shipped, interface):  # every member is documented in a comment
        assert f"{member.split()[1]}:" in text, member


def test_policy_and_polkit_files_agree_with_the_code() -> None:
    conf = ET.parse(REPO / "packaging" / "dbus" / "org.pxed.Pxed1.conf").getroot()
    owners = {p.get("user") for p in conf.iter("policy") for a in p if a.get("own") == names.BUS_NAME}
    assert owners == {"pxed", "root"}
    (default,) = [p for p in conf.iter("policy") if p.get("context") == "default"]
    allowed = {(a.get("send_interface"), a.get("send_member")) for a in default.iter("allow")
               if a.get("send_destination") == names.BUS_NAME}
    manager = ET.parse(REPO / "packaging" / "dbus" / "org.pxed.Pxed1.Manager.xml").getroot()
    methods = {m.get("name") for m in manager.iter("method")}
    assert {m for i, m in allowed if i == names.MANAGER_INTERFACE} == methods
    assert (names.JOB_INTERFACE, "Cancel") in allowed
    assert ("org.freedesktop.DBus.Properties", "Set") not in allowed
    policy = ET.parse(REPO / "packaging" / "polkit" / "org.pxed.Pxed1.policy").getroot()
    defaults = {a.get("id"): a.find("defaults/allow_active").text for a in policy.iter("action")}  # type: ignore
    assert defaults == {str(a): "yes" if a is names.Action.READ else "auth_admin_keep" for a in names.Action}
    service = (REPO / "packaging" / "dbus" / "org.pxed.Pxed1.service").read_text()
    assert "Name=org.pxed.Pxed1\n" in service and "SystemdService=pxed.service\n" in service
