"""The catalog (validated on write with the loader) and the recovery pass after a crash."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pxed.config import load_config
from pxed.images.catalog import Catalog, CatalogError, Detection, ImageRecord, ImageState
from pxed.service import Service

ARCH = Detection(profile="archiso", version="2026.11.01", label="ARCH_202611", kernel="arch/boot/x86_64/vmlinuz-linux",
                 initrds=("arch/boot/x86_64/initramfs-linux.img",),
                 cmdline="archisobasedir=arch archiso_http_srv=http://{server}/{base}/ ip=dhcp", sysappend=2)


def rec(i: str, state: ImageState = ImageState.READY) -> ImageRecord:
    return ImageRecord(id=i, title=f"Image {i}", state=state, detection=ARCH, size=1, created=1.0)


def test_round_trip_and_boot_entry(tmp_path: Path) -> None:
    c = Catalog(tmp_path)
    c.save([rec("arch"), rec("old", ImageState.FAILED)])
    assert c.load() == (rec("arch"), rec("old", ImageState.FAILED))
    e = rec("arch").boot_entry("10.77.0.1:8080")
    assert e.kernel == "images/arch/arch/boot/x86_64/vmlinuz-linux"
    assert e.append == "archisobasedir=arch archiso_http_srv=http://10.77.0.1:8080/images/arch/ ip=dhcp"
    assert e.sysappend == 2
    memdisk = ImageRecord(id="win", title="x", state=ImageState.READY, detection=Detection(profile="memdisk",
                                                                                          memdisk=True))
    assert memdisk.boot_entry("s").kind == "memdisk" and memdisk.boot_entry("s").kernel == "images/win/win.iso"


@pytest.mark.parametrize("bad", [rec("Bad Id"), ImageRecord(id="x", title="a\nb", state=ImageState.READY,
                                                             detection=ARCH)])
def test_invalid_records_are_never_written(tmp_path: Path, bad: ImageRecord) -> None:
    c = Catalog(tmp_path)
    c.save([rec("good")])
    with pytest.raises(CatalogError):
        c.save([rec("good"), bad])
    assert c.load() == (rec("good"),)  # the old catalog is intact
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.json"]


def test_corrupt_catalog_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text('{"version": 1, "images": [{"id": 3}]}')
    with pytest.raises(CatalogError, match="not valid"):
        Catalog(tmp_path).load()


def test_recovery_after_a_crash(tmp_path: Path) -> None:
    conf = tmp_path / "pxed.conf"
    conf.write_text(f"[Network]\nInterface=lab0\n[Paths]\nBootRoot={tmp_path}/boot\nStateDirectory={tmp_path}/state\n")
    config = load_config(conf)
    Catalog(config.state_dir).save([rec("arch"), rec("half", ImageState.IMPORTING)])
    for d in ("boot/images/arch", "boot/images/half", "boot/images/stray", "state/staging/half.x1"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "state/.catalog.json.tmp123").write_text("partial")
    svc = Service(config, server_address=lambda: ipaddress.IPv4Address("10.77.0.1"))
    report = svc.recover()
    assert report.failed_imports == ("half",)
    assert sorted(p.name for p in (tmp_path / "boot/images").iterdir()) == ["arch"]
    assert list((tmp_path / "state/staging").iterdir()) == []
    assert not (tmp_path / "state/.catalog.json.tmp123").exists()
    states = {r.id: (r.state, r.reason) for r in Catalog(config.state_dir).load()}
    assert states["arch"] == (ImageState.READY, None)
    assert states["half"][0] is ImageState.FAILED and "interrupted" in str(states["half"][1])
    svc.render_menus()
    menu = (tmp_path / "boot/pxelinux.cfg/pxe.cfg").read_text()
    assert "LABEL arch" in menu and "LABEL half" not in menu  # only ready images are offered


def test_remove_image(tmp_path: Path) -> None:
    from pxed.errors import NotFound

    conf = tmp_path / "pxed.conf"
    conf.write_text(f"[Network]\nInterface=lab0\n[Paths]\nBootRoot={tmp_path}/boot\nStateDirectory={tmp_path}/state\n")
    config = load_config(conf)
    Catalog(config.state_dir).save([rec("arch"), rec("keep")])
    for d in ("arch", "keep"):
        (tmp_path / "boot/images" / d).mkdir(parents=True)
    svc = Service(config, server_address=lambda: ipaddress.IPv4Address("10.77.0.1"))
    svc.recover()
    assert svc.remove_image("arch").id == "arch"
    assert [r.id for r in Catalog(config.state_dir).load()] == ["keep"]
    assert not (tmp_path / "boot/images/arch").exists() and (tmp_path / "boot/images/keep").exists()
    menu = (tmp_path / "boot/pxelinux.cfg/pxe.cfg").read_text()
    assert "LABEL keep" in menu and "LABEL arch" not in menu
    with pytest.raises(NotFound):
        svc.remove_image("arch")
