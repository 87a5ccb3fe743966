"""Imports of fixture ISOs with each distribution's real layout, and of Debian's real ipxe.iso (memdisk)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest

from pxed.errors import (
    Busy,
    Cancelled,
    Exists,
    InvalidArgument,
    InvalidName,
    NoSpace,
    NotAnIso,
    TooLarge,
    UnknownLayout,
)
from pxed.images.catalog import Detection, ImageState
from pxed.images.iso import IsoReader
from tests.conftest import need
from tests.images import isos
from tests.images.conftest import Env, make_env

IPXE_ISO = Path("/usr/lib/ipxe/ipxe.iso")
HTTP = "http://10.77.0.1:8080/images"

# layout → (profile, version, kernel, initrds, words the command line must hold, files served beside them)
EXPECTED: dict[str, tuple[str, str | None, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "archiso": ("archiso", "2026.11.01", "arch/boot/x86_64/vmlinuz-linux",
                ("arch/boot/intel-ucode.img", "arch/boot/amd-ucode.img", "arch/boot/x86_64/initramfs-linux.img"),
                ("archisobasedir=arch", f"archiso_http_srv={HTTP}/arch_202611/", "ip=dhcp", "checksum=y",
                 "cms_verify=y"),
                ("arch/x86_64/airootfs.sfs", "arch/x86_64/airootfs.sha512", "arch/x86_64/airootfs.sfs.cms.sig")),
    "clonezilla": ("clonezilla", "clonezilla-live-3.1.2-22-amd64", "live/vmlinuz", ("live/initrd.img",),
                   ("boot=live", f"fetch={HTTP}/3-1-2-22-amd64/live/filesystem.squashfs", "union=overlay"),
                   ("live/filesystem.squashfs",)),
    "debian-live": ("debian-live", "12.5.0", "live/vmlinuz-6.1.0-18-amd64", ("live/initrd.img-6.1.0-18-amd64",),
                    ("boot=live", "components", f"fetch={HTTP}/d-live-12.5.0-xf-amd64/live/filesystem.squashfs"),
                    ("live/filesystem.squashfs",)),
    "ubuntu-casper": ("ubuntu-casper", "22.04.4", "casper/vmlinuz", ("casper/initrd",),
                      ("boot=casper", "netboot=url", "ip=dhcp",
                       f"url={HTTP}/ubuntu-22.04.4-lts-amd64/casper/filesystem.squashfs"),
                      ("casper/filesystem.squashfs",)),
    "ubuntu-casper-iso": ("ubuntu-casper-iso", "24.04.1", "casper/vmlinuz", ("casper/initrd",),
                          ("boot=casper", "ip=dhcp", "root=/dev/ram0",
                           f"url={HTTP}/ubuntu-server-24.04.1-lts-amd64/ubuntu-server-24.04.1-lts-amd64.iso"),
                          ("ubuntu-server-24.04.1-lts-amd64.iso",)),
    "fedora-live": ("fedora-live", "39", "images/pxeboot/vmlinuz", ("images/pxeboot/initrd.img",),
                    (f"root=live:{HTTP}/fedora-ws-live-39-1-5/LiveOS/squashfs.img", "rd.live.image", "ip=dhcp"),
                    ("LiveOS/squashfs.img",)),
    "memtest86+": ("memtest86+", None, "boot/memtest.bin", (), (), ()),
    "generic": ("generic", None, "boot/vmlinuz", ("boot/core.gz",), ("quiet", "loglevel=3", "vga=791"), ()),
    "generic-grub": ("generic", None, "kernels/linux", ("kernels/initramfs.cpio.gz",),
                     ("console=ttyS0", "rdinit=/init"), ()),
}


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_each_layout_is_detected_extracted_and_offered(env: Env, tmp_path: Path, layout: str) -> None:
    profile, version, kernel, initrds, words, beside = EXPECTED[layout]
    iso, contents = isos.build(layout, tmp_path)
    seen: list[Detection] = []
    steps: list[tuple[int, int]] = []
    rec = env.add(iso, on_detected=seen.append, progress=lambda d, t: steps.append((d, t)))
    det = rec.detection
    assert seen == [det]  # reported before writing, stored after
    assert (det.profile, det.version, det.kernel, det.initrds) == (profile, version, kernel, initrds)
    assert rec.state is ImageState.READY and env.catalog() == (rec,)
    assert set(beside) <= set(det.files) and set(det.files) == {f.path for f in rec.files}
    env.assert_complete(rec)
    for f in rec.files:
        if f.path in contents:
            assert (env.boot / "images" / rec.id / f.path).read_bytes() == contents[f.path]
    assert steps[-1] == (rec.size, rec.size) and all(a[0] <= b[0] for a, b in zip(steps, steps[1:], strict=False))
    menu = env.menu()
    assert f"LABEL {rec.id}\n" in menu and f"LINUX {HTTP}/{rec.id}/{kernel}\n" in menu
    if initrds:
        assert f"INITRD {','.join(f'{HTTP}/{rec.id}/{i}' for i in initrds)}\n" in menu
    append = next((ln for ln in menu.splitlines() if ln.startswith("APPEND ") and rec.id in ln or
                   ln.startswith("APPEND ") and words and words[0] in ln), "")
    for w in words:
        assert w in append.split(), (w, append)
    if layout == "ubuntu-casper-iso":  # the RAM disk holds the whole ISO
        kib = int(next(w for w in append.split() if w.startswith("ramdisk_size=")).split("=")[1])
        assert iso.stat().st_size < kib * 1024 < iso.stat().st_size * 1.2
    env.assert_no_leftovers()


def test_real_ipxe_iso_is_served_whole_through_memdisk(env: Env) -> None:
    need(IPXE_ISO.exists(), "ipxe.iso is not installed (Debian package ipxe; run: make deps)")
    rec = env.add(IPXE_ISO)
    assert rec.id == "isoimage" and rec.detection.memdisk and rec.detection.profile == "memdisk"
    assert [f.path for f in rec.files] == ["isoimage.iso"]
    served = env.boot / "images/isoimage/isoimage.iso"
    assert served.read_bytes() == IPXE_ISO.read_bytes()
    assert rec.iso_sha256 == hashlib.sha256(IPXE_ISO.read_bytes()).hexdigest()
    env.assert_complete(rec)
    menu = env.menu().replace("MENU DEFAULT\n", "")
    assert f"LABEL isoimage\nMENU LABEL ISOIMAGE\nLINUX memdisk\nINITRD {HTTP}/isoimage/isoimage.iso\n" \
           "APPEND iso raw\n" in menu


def test_memdisk_can_be_forced_and_unknown_layouts_refused(tmp_path: Path) -> None:
    env = make_env(tmp_path / "pxed", "[Images]\nMemdisk=no\n")
    unknown, _ = isos.build("unknown", tmp_path)
    with pytest.raises(UnknownLayout) as e:
        env.add(unknown)
    assert "--memdisk" in str(e.value)
    assert env.catalog() == () and env.service.list_images() == ()
    env.assert_no_leftovers()
    rec = env.add(unknown, memdisk=True)  # the caller asks for it: allowed even when the fallback is off
    assert rec.detection.memdisk and rec.id == "data_disc"
    arch, _ = isos.build("archiso", tmp_path)
    forced = env.add(arch, "arch-whole", memdisk=True)
    assert forced.detection.memdisk and [f.path for f in forced.files] == ["arch-whole.iso"]
    on = make_env(tmp_path / "other")
    with pytest.raises(UnknownLayout):
        on.add(unknown, memdisk=False)


def test_names_titles_and_duplicates(env: Env, tmp_path: Path) -> None:
    iso, _ = isos.build("archiso", tmp_path)
    rec = env.add(iso)
    assert (rec.id, rec.title) == ("arch_202611", "Arch Linux 2026.11.01")
    with pytest.raises(Exists) as e:
        env.add(iso)
    assert "pxectl remove arch_202611" in str(e.value)
    for bad in ("Arch", "-x", "a/b", "..", "a" * 64, "x\n", ""):
        with pytest.raises(InvalidName):
            env.add(iso, bad)
    for title in ("two\nlines", "tab\there", "x" * 61, "{{ evil }}", "nul\x00", "\u2028"):
        with pytest.raises(InvalidArgument):
            env.add(iso, "t1", title=title)
    assert [r.id for r in env.catalog()] == ["arch_202611"]
    named = env.add(iso, "arch2", title="Rescue (Arch)")
    assert named.title == "Rescue (Arch)" and "MENU LABEL Rescue (Arch)\n" in env.menu()
    env.assert_no_leftovers()


def test_fd_checks(env: Env, tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(InvalidArgument, match="pipe"):
            env.service.import_image(r, "p", _opts())
    finally:
        os.close(r)
        os.close(w)
    for path, err in ((Path("/dev/zero"), InvalidArgument), (tmp_path, InvalidArgument)):
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(err):
                env.service.import_image(fd, "x", _opts())
        finally:
            os.close(fd)
    zeros = tmp_path / "zeros.iso"
    zeros.write_bytes(bytes(64 * 2048))
    with pytest.raises(NotAnIso):
        env.add(zeros, "z")
    rnd = tmp_path / "random.iso"
    rnd.write_bytes(os.urandom(64 * 2048))
    with pytest.raises(NotAnIso):
        env.add(rnd, "r")
    tiny = tmp_path / "tiny.iso"
    tiny.write_bytes(b"CD001")
    with pytest.raises(NotAnIso):
        env.add(tiny, "t")
    big = make_env(tmp_path / "small", "[Images]\nMaxSize=64K\n")
    iso, _ = isos.build("generic", tmp_path)
    with pytest.raises(TooLarge, match="MaxSize"):
        big.add(iso)
    assert env.catalog() == () and big.catalog() == ()
    env.assert_no_leftovers()


def _opts() -> object:
    from pxed.service import ImportOptions

    return ImportOptions()


def test_cancel_leaves_nothing(env: Env, tmp_path: Path) -> None:
    iso, _ = isos.build("archiso", tmp_path)
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done > 0:
            cancel.set()
            assert [r.state for r in env.service.list_images()] == [ImageState.IMPORTING]
            with pytest.raises(Busy):
                env.service.remove_image("arch_202611")

    with pytest.raises(Cancelled):
        env.add(iso, cancel=cancel, progress=progress)
    assert env.catalog() == () and env.service.list_images() == ()
    assert "arch_202611" not in env.menu()
    env.assert_no_leftovers()


def test_remove_takes_files_and_entry(env: Env, tmp_path: Path) -> None:
    iso, _ = isos.build("clonezilla", tmp_path)
    rec = env.add(iso, "cz")
    assert "LABEL cz\n" in env.menu()
    env.service.remove_image("cz")
    assert "LABEL cz\n" not in env.menu() and not (env.boot / "images" / rec.id).exists()
    env.assert_no_leftovers()


@pytest.mark.parametrize("names", ["joliet", "iso9660"])
def test_joliet_and_plain_iso9660_names(env: Env, tmp_path: Path, names: str) -> None:
    """Without Rock Ridge, Joliet names are used; without either, ISO 9660 names as Linux shows them."""
    label, files = isos.LAYOUTS["generic"]
    iso, _ = isos.make_iso(tmp_path / f"{names}.iso", files, label, rock=False, joliet=names == "joliet")
    fd = os.open(iso, os.O_RDONLY)
    try:
        with IsoReader(fd, os.fstat(fd).st_size) as r:
            assert r.namespace == ("joliet_path" if names == "joliet" else "iso_path")
            assert "boot/isolinux/isolinux.cfg" in r.files
    finally:
        os.close(fd)
    rec = env.add(iso, names)
    assert rec.detection.profile == "generic" and rec.detection.kernel == "boot/vmlinuz"
    env.assert_complete(rec)


def test_copies_need_no_byte_extents(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pycdlib < 1.16 (Debian 12: 1.12) has no get_file_byte_extents: pxed never needs it (it copies the
    extents of the directory records it listed)."""
    import pycdlib

    if hasattr(pycdlib.PyCdlib, "get_file_byte_extents"):
        monkeypatch.delattr(pycdlib.PyCdlib, "get_file_byte_extents")
    iso, contents = isos.build("archiso", tmp_path)
    rec = env.add(iso)
    env.assert_complete(rec)
    assert (env.boot / "images" / rec.id / "arch/x86_64/airootfs.sfs").read_bytes() == \
        contents["arch/x86_64/airootfs.sfs"]


def test_no_space_is_refused_before_writing(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "pxed-test", os.fspath(small)], check=True)
    try:
        env = make_env(small / "pxed")
        iso, _ = isos.build("archiso", tmp_path)
        before = env.tree()
        with pytest.raises(NoSpace) as e:
            env.add(iso)
        assert "pxectl remove" in str(e.value) and env.tree() == before and env.catalog() == ()
        env.assert_no_leftovers()
        gen, _ = isos.build("generic", tmp_path)  # 800 KiB: fits
        env.assert_complete(env.add(gen))

        # The disk fills up while the files are copied (something else wrote): NoSpace, nothing left.
        clz, _ = isos.build("clonezilla", tmp_path)  # 1.9 MiB: fits too, until the filler takes the rest
        filler = small / "filler"

        def fill(done: int, total: int) -> None:
            if done and not filler.exists():
                with open(filler, "wb") as f:
                    with contextlib.suppress(OSError):
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()

        before = env.tree()
        with pytest.raises(NoSpace):
            env.add(clz, "clz", progress=fill)
        filler.unlink()
        assert env.tree() == before and [r.id for r in env.catalog()] == ["tinycore"]
        env.assert_no_leftovers()
    finally:
        subprocess.run(["umount", os.fspath(small)], check=True)


def test_symlinked_kernel_inside_the_iso_is_served_as_a_copy(env: Env, tmp_path: Path) -> None:
    label, files = isos.LAYOUTS["debian-live"]
    tree = tmp_path / "tree"
    contents = isos.write_tree(tree, files)
    os.symlink("vmlinuz-6.1.0-18-amd64", tree / "live/vmlinuz")
    os.symlink("initrd.img-6.1.0-18-amd64", tree / "live/initrd.img")
    rec = env.add(isos.xorriso(tree, tmp_path / "linked.iso", label), "linked")
    assert (rec.detection.kernel, rec.detection.initrds) == ("live/vmlinuz", ("live/initrd.img",))
    kernel = env.boot / "images/linked/live/vmlinuz"
    assert not kernel.is_symlink() and kernel.read_bytes() == contents["live/vmlinuz-6.1.0-18-amd64"]
    env.assert_complete(rec)


def test_modes_do_not_depend_on_the_umask(env: Env, tmp_path: Path) -> None:
    iso, _ = isos.build("fedora-live", tmp_path)
    old = os.umask(0o077)
    try:
        rec = env.add(iso, "fedora")
    finally:
        os.umask(old)
    base = env.boot / "images"
    for p in [base, *base.rglob("*")]:
        assert p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644), p
    env.assert_complete(rec)


def test_menus_that_cannot_be_written_do_not_undo_a_finished_import(env: Env, tmp_path: Path) -> None:
    iso, _ = isos.build("generic", tmp_path)
    menus = env.boot / "pxelinux.cfg"
    saved = tmp_path / "saved-menus"
    menus.rename(saved)
    menus.write_text("not a directory")  # every menu write fails (as on a full or broken disk)
    rec = env.add(iso, "tc")
    assert env.catalog() == (rec,) and rec.state is ImageState.READY
    env.assert_complete(rec)
    menus.unlink()
    saved.rename(menus)
    assert "LABEL tc\n" not in env.menu()  # the old menu stayed whole
    env.service.render_menus()
    assert "LABEL tc\n" in env.menu()
