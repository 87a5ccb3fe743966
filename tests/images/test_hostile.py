"""Hostile ISOs: every kind is refused with a typed error or sanitised, and nothing is left behind.

Sanitised means the hostile entries are dropped while reading (IsoReader.dropped says why),
the rest imports, and the only new paths are the image's own recorded files.  Refused
means a typed error, the catalog unchanged, no staging leftovers, no new files at all.
Nothing is ever created outside the image directory (the tree of the whole test root is
compared before and after, and the names the ISOs aim at are checked at /).
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pxed.errors import Cancelled, ImageError, InvalidImage, NotAnIso, PxedError, UnknownLayout
from pxed.images.importer import Request, import_iso
from pxed.images.iso import IsoReader, Limits
from tests.images import isos
from tests.images.conftest import Env, make_env

GENERIC = isos.LAYOUTS["generic"][1]
TEXT_GENERIC = {k: (v if isinstance(v, bytes) else isos.kernel(v)) for k, v in GENERIC.items()}  # no random bytes


def _both(n: int) -> bytes:
    """A 32-bit number as ISO 9660 stores it: little-endian then big-endian."""
    return struct.pack("<I", n) + struct.pack(">I", n)


def _rr(name: bytes) -> bytes:
    return b"NM" + bytes([5 + len(name), 1, 0]) + name


def _tree_iso(tmp: Path, files: dict[str, bytes], *, norock: bool = False, label: str = "TINYCORE") -> Path:
    return isos.make_iso(tmp / "h.iso", files, label, rock=not norock)[0]


def rr_names(*pairs: tuple[bytes, bytes]) -> Callable[[Path], Path]:
    """Rock Ridge names patched after the build: the name check sees exactly these bytes."""
    def build(tmp: Path) -> Path:
        files = dict(TEXT_GENERIC)
        for old, _ in pairs:
            files[f"x/{old.decode()}"] = b"payload\n"
        iso = _tree_iso(tmp, files)
        for old, new in pairs:
            isos.patch(iso, _rr(old), _rr(new))
        return iso
    return build


def joliet_names(tmp: Path) -> Path:
    files = {**TEXT_GENERIC, "x/jjjj": b"a\n", "x/kkkkkk": b"b\n"}
    iso = _tree_iso(tmp, files, norock=True)
    isos.patch(iso, "jjjj".encode("utf-16-be"), "../j".encode("utf-16-be"))
    isos.patch(iso, "kkkkkk".encode("utf-16-be"), "/etc/k".encode("utf-16-be"))
    return iso


def links_and_nodes(tmp: Path) -> Path:
    tree = tmp / "tree"
    isos.write_tree(tree, TEXT_GENERIC)
    (tree / "x").mkdir()
    os.symlink("/etc/passwd", tree / "x/abs")
    os.symlink("../../../../../../etc", tree / "x/rel")
    os.symlink("/etc", tree / "x/dirlink")
    os.symlink("../boot/vmlinuz", tree / "x/inside")
    os.mknod(tree / "x/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(tree / "x/blk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.mkfifo(tree / "x/fifo")
    return isos.xorriso(tree, tmp / "h.iso", "TINYCORE")


def kernel_is_a_symlink(tmp: Path) -> Path:
    tree = tmp / "tree"
    isos.write_tree(tree, {k: v for k, v in TEXT_GENERIC.items() if k != "boot/vmlinuz"})
    os.symlink("/etc/passwd", tree / "boot/vmlinuz")
    return isos.xorriso(tree, tmp / "h.iso", "TINYCORE")


def config_escapes(tmp: Path) -> Path:
    files = dict(TEXT_GENERIC)
    files["boot/isolinux/isolinux.cfg"] = (b"LABEL x\n KERNEL ../../../../../etc/passwd\n"
                                           b" APPEND initrd=/../../boot/core.gz\n")
    return _tree_iso(tmp, files)


def unsafe_boot_names(kernel: str, initrd: str) -> Callable[[Path], Path]:
    """A grub.cfg naming a kernel and an initrd that exist, under names no menu line or URL can hold."""
    def build(tmp: Path) -> Path:
        files = {kernel: isos.kernel(3000), initrd: b"i" * 3000,
                 "boot/grub/grub.cfg": f"menuentry x {{\n linux '/{kernel}' quiet\n initrd '/{initrd}'\n}}\n".encode()}
        return _tree_iso(tmp, files, label="SOMELINUX")
    return build


# The generic layout in ISO 9660 names, for the trees only pycdlib writes.
PYCDLIB_GENERIC: list[tuple[str, str, bytes | None]] = [
    ("/BOOT", "boot", None), ("/BOOT/VMLINUZ.;1", "vmlinuz", isos.kernel(3000)),
    ("/BOOT/CORE.GZ;1", "core.gz", b"i" * 3000),
    ("/BOOT/ISOLINUX", "isolinux", None),
    ("/BOOT/ISOLINUX/ISOLINUX.CFG;1", "isolinux.cfg", TEXT_GENERIC["boot/isolinux/isolinux.cfg"]),
]


def _pycdlib_iso(tmp: Path, extra: list[tuple[str, str, bytes | None]]) -> Path:
    try:
        return isos.pycdlib_iso(tmp / "h.iso", "TINYCORE", [*PYCDLIB_GENERIC, *extra])
    except isos.CannotBuild as e:  # pycdlib 1.12 cannot write such trees
        pytest.skip(f"this pycdlib cannot build the fixture: {e}")


def deep_and_long(tmp: Path) -> Path:
    extra: list[tuple[str, str, bytes | None]] = []
    p = ""
    for k in range(17):  # 17 components of 240 bytes: a path of more than 4095 bytes
        p += f"/L{k}"
        extra.append((p, "L" * 240, None))
    extra.append((p + "/F.;1", "long", b"long"))
    p = ""
    for k in range(70):  # deeper than 64 levels
        p += f"/E{k}"
        extra.append((p, "e", None))
    extra.append((p + "/G.;1", "deep", b"deep"))
    return _pycdlib_iso(tmp, extra)


def directory_loop(tmp: Path) -> Path:
    out = _pycdlib_iso(tmp, [("/LOOP", "loop", None), ("/LOOP/F.;1", "f", b"x" * 10)])
    isos.patch(out, _both(isos.extent(out, "/LOOP")), _both(isos.extent(out, "/")))
    return out


def truncated(fraction: float) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        iso, _ = isos.build("archiso", tmp)
        with open(iso, "r+b") as f:
            f.truncate(int(iso.stat().st_size * fraction) // 2048 * 2048)
        return iso
    return build


def forged_size(tmp: Path) -> Path:
    files = {**TEXT_GENERIC, "boot/core.gz": b"i" * 12345}
    iso = _tree_iso(tmp, files)
    huge = 0x7FFF0000
    isos.patch(iso, _both(12345), _both(huge))
    return iso


def many_names_one_extent(tmp: Path) -> Path:
    """201 hard links to one 4 MiB sidecar: xorriso stores one extent, an extractor would write 804 MiB."""
    label, files = isos.LAYOUTS["archiso"]
    tree = tmp / "tree"
    isos.write_tree(tree, files)
    big = tree / "arch/x86_64/airootfs.sfs.sig"
    big.write_bytes(os.urandom(4 << 20))
    for i in range(200):
        os.link(big, tree / f"arch/x86_64/airootfs.{i}.sig")
    return isos.xorriso(tree, tmp / "h.iso", label)


def many_files(tmp: Path) -> Path:
    return _tree_iso(tmp, {**TEXT_GENERIC, **{f"many/f{i}": b"" for i in range(300)}})


# case → (builder, expected error or None when sanitised, what IsoReader.dropped must mention)
CASES: dict[str, tuple[Callable[[Path], Path], type[PxedError] | None, tuple[str, ...]]] = {
    "dotdot-name": (rr_names((b"qq", b".."), (b"q", b".")), None, ("b'..': unsafe name", "b'.': unsafe name")),
    "slash-names": (rr_names((b"wwwwwwwwww", b"../../pwnd"), (b"vvvvvvvvvv", b"/etc/pwned")), None,
                    ("b'../../pwnd'", "b'/etc/pwned'")),
    "control-chars": (rr_names((b"nlnlnlnlnl", b"a\nLABEL xx"), (b"nulnulnul0", b"nul\x00nulnul"),
                               (b"escescesc1", b"\x1b[2Jescesc"), (b"badutf8xx", b"bad\xff\xfe8xxx"),
                               (b"u2028xx", "u\u2028xxx".encode())), None,
                      ("LABEL xx", "nul\\x00", "\\x1b[2J", "\\xff\\xfe", "\\xe2\\x80\\xa8")),
    "joliet-names": (joliet_names, None, ("'../j'", "'/etc/k'")),
    "symlinks-and-device-nodes": (links_and_nodes, None,
                                  ("x/abs: symlink to b'/etc/passwd'", "x/rel: symlink to b'../../../../../../etc'",
                                   "x/dirlink: symlink to b'/etc'", "x/null: special", "x/blk: special",
                                   "x/fifo: special")),
    "deep-and-long-paths": (deep_and_long, None, ("path too long or too deep",)),
    "kernel-is-a-symlink": (kernel_is_a_symlink, UnknownLayout, ()),
    "config-escapes": (config_escapes, UnknownLayout, ()),
    "directory-loop": (directory_loop, InvalidImage, ()),
    "comma-in-initrd": (unsafe_boot_names("boot/vmlinuz", "boot/initrd.gz,EXTRA.img"), InvalidImage, ()),
    "percent-in-kernel": (unsafe_boot_names("boot/%2e%2e/vmlinuz", "boot/initrd.gz"), InvalidImage, ()),
    "space-in-kernel": (unsafe_boot_names("boot/vm linuz", "boot/initrd.gz"), InvalidImage, ()),
    "truncated-half": (truncated(0.5), InvalidImage, ()),
    "truncated-head": (truncated(0.0005), ImageError, ()),
    "forged-size": (forged_size, InvalidImage, ()),
    "many-names-one-extent": (many_names_one_extent, InvalidImage, ()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_iso(tmp_path: Path, case: str) -> None:
    builder, error, dropped = CASES[case]
    iso = builder(tmp_path)
    env = make_env(tmp_path / "pxed", "[Images]\nMemdisk=no\n")
    before_tree, before_catalog = env.tree(), env.catalog()
    if error is not None:
        with pytest.raises(error) as refused:
            env.add(iso, "hostile")
        assert refused.value.hint, refused.value  # every refusal says what to do next
        assert env.catalog() == before_catalog and env.tree() == before_tree
    else:
        fd = os.open(iso, os.O_RDONLY)
        try:
            with IsoReader(fd, os.fstat(fd).st_size) as r:
                text = "\n".join(r.dropped)
                for d in dropped:
                    assert d in text, (d, r.dropped)
                assert all(".." not in p.split("/") and not p.startswith("/") for p in r.files)
                if case == "symlinks-and-device-nodes":  # a link to a file inside the ISO is kept, as a copy
                    assert r.files["x/inside"].size == r.files["boot/vmlinuz"].size
                    assert r.read_text("x/inside", 1 << 20) == r.read_text("boot/vmlinuz", 1 << 20)
        finally:
            os.close(fd)
        rec = env.add(iso, "hostile")
        assert rec.detection.profile == "generic"
        env.assert_complete(rec)
        new = set(env.tree()) - set(before_tree)
        assert all(p.startswith("boot/images") or p in ("state/catalog.json", "state/staging") for p in new), new
    env.assert_no_leftovers()
    for aimed in ("/etc/pwned", "/pwnd", "/etc/k", "/j"):
        assert not os.path.lexists(aimed)


def test_too_many_files_is_refused(tmp_path: Path) -> None:
    iso = many_files(tmp_path)
    env = make_env(tmp_path / "pxed")
    fd = os.open(iso, os.O_RDONLY)
    try:
        with pytest.raises(InvalidImage, match="more than 100 entries"):
            import_iso(fd, Request(max_files=100), env.service.store())
        assert import_iso(fd, Request(name="ok", max_files=1000), env.service.store()).id == "ok"
    finally:
        os.close(fd)
    env.assert_no_leftovers()


def test_refusals_are_typed(tmp_path: Path) -> None:
    """Not an ISO at all (an ext4-like blob) vs an ISO whose metadata is garbage."""
    env: Env = make_env(tmp_path / "pxed")
    blob = tmp_path / "disk.img"
    blob.write_bytes(os.urandom(1 << 20))
    with pytest.raises(NotAnIso):
        env.add(blob, "x")
    iso, _ = isos.build("generic", tmp_path)
    data = bytearray(iso.read_bytes())
    data[16 * 2048 + 128:16 * 2048 + 2048] = os.urandom(2048 - 128)  # PVD body scrambled, CD001 kept
    bad = tmp_path / "bad.iso"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError):
        env.add(bad, "y")
    env.assert_no_leftovers()


def test_loader_parameters_of_the_isos_config_never_reach_the_menu(tmp_path: Path) -> None:
    files = {"boot/vmlinuz": isos.kernel(3000), "boot/initrd.gz": b"i" * 3000, "boot/evil.img": b"e" * 3000,
             "boot/grub/grub.cfg": b"menuentry x {\n linux /boot/vmlinuz initrd=/boot/evil.img BOOT_IMAGE=/x quiet\n"
                                   b" initrd /boot/initrd.gz\n}\n"}
    env = make_env(tmp_path / "pxed")
    rec = env.add(_tree_iso(tmp_path, files, label="SOMELINUX"), "some")
    assert rec.detection.cmdline == "quiet" and rec.detection.files == ("boot/vmlinuz", "boot/initrd.gz")
    menu = env.menu()
    assert "APPEND quiet\n" in menu and "evil" not in menu and "BOOT_IMAGE" not in menu
    env.assert_complete(rec)


def _named_twice(tmp: Path, first: bytes, second: bytes) -> Path:
    """Two kernels both named boot/vmlinuz in Rock Ridge: ``first`` comes first in the directory."""
    files = {**TEXT_GENERIC, "boot/vmlinuy": first, "boot/vmlinuz": second}  # VMLINUY.;1 sorts first
    iso = _tree_iso(tmp, files)
    isos.patch(iso, _rr(b"vmlinuy"), _rr(b"vmlinuz"))
    return iso


@pytest.mark.parametrize("checked_first", [True, False])
def test_a_name_given_twice_copies_the_entry_that_was_checked(tmp_path: Path, checked_first: bool) -> None:
    """The listing keeps the first of two equal names (pycdlib's lookup by name would find the last):
    that very entry is checked and copied, from its own extents."""
    good, bad = isos.kernel(3000, b"g"), b"b" * 3000  # the same size; only one has a kernel header
    iso = _named_twice(tmp_path, good, bad) if checked_first else _named_twice(tmp_path, bad, good)
    fd = os.open(iso, os.O_RDONLY)
    try:
        with IsoReader(fd, os.fstat(fd).st_size) as r:
            assert "boot/vmlinuz: duplicate name" in r.dropped
            assert r.read_text("boot/vmlinuz") == (good if checked_first else bad)
    finally:
        os.close(fd)
    env = make_env(tmp_path / "pxed", "[Images]\nMemdisk=no\n")
    before = env.tree()
    if checked_first:
        rec = env.add(iso, "twice")
        assert (env.boot / "images/twice/boot/vmlinuz").read_bytes() == good
        env.assert_complete(rec)
    else:
        with pytest.raises(InvalidImage, match="no bzImage, PE/EFI or arm64 Image header") as refused:
            env.add(iso, "twice")
        assert refused.value.hint and env.tree() == before
    env.assert_no_leftovers()


@pytest.mark.parametrize(("path", "content", "error"), [
    ("arch/boot/x86_64/vmlinuz-linux", b"", "kernel arch/boot/x86_64/vmlinuz-linux is an empty file"),
    ("arch/boot/x86_64/initramfs-linux.img", b"", "initrd arch/boot/x86_64/initramfs-linux.img is an empty file"),
    ("arch/boot/intel-ucode.img", b"", "initrd arch/boot/intel-ucode.img is an empty file"),
    ("arch/boot/x86_64/vmlinuz-linux", b"#!/bin/sh\n" * 100, "no bzImage, PE/EFI or arm64 Image header"),
])
def test_what_cannot_boot_is_not_offered(tmp_path: Path, path: str, content: bytes, error: str) -> None:
    label, files = isos.LAYOUTS["archiso"]
    iso, _ = isos.make_iso(tmp_path / "a.iso", {**files, path: content}, label)
    env = make_env(tmp_path / "pxed")
    before_tree, before_catalog = env.tree(), env.catalog()
    with pytest.raises(InvalidImage, match=error) as refused:
        env.add(iso)
    assert refused.value.hint
    assert env.catalog() == before_catalog and env.tree() == before_tree
    env.assert_no_leftovers()


def test_kernel_headers_pxed_offers(tmp_path: Path) -> None:
    """bzImage (x86), PE/EFI (EFI stub, zboot) and arm64 Image headers are all kernels."""
    arm64 = bytearray(b"\0" * 4096)
    arm64[0x38:0x3C] = b"ARM\x64"
    efi = b"MZ" + b"\0" * 4094
    bz = bytearray(b"\0" * 4096)
    bz[0x202:0x206] = b"HdrS"
    for i, kernel in enumerate((bytes(arm64), efi, bytes(bz))):
        files = {**TEXT_GENERIC, "boot/vmlinuz": kernel}
        iso = isos.make_iso(tmp_path / f"k{i}.iso", files, "TINYCORE")[0]
        env = make_env(tmp_path / f"pxed{i}")
        env.assert_complete(env.add(iso, f"k{i}"))


# ---------------------------------------------------------------------- bounded metadata parsing


def _ce(block: int, offset: int, length: int) -> bytes:
    """A SUSP continuation entry (CE): the record's System Use data goes on at block/offset/length."""
    return b"CE" + bytes([28, 1]) + _both(block) + _both(offset) + _both(length)


def _nm(name: bytes, flags: int = 1) -> bytes:
    return b"NM" + bytes([5 + len(name), 1, flags]) + name  # flags 1: the name goes on


def shared_ce_chains(tmp: Path, records: int = 200, blocks: int = 400) -> Path:
    """``records`` files whose Rock Ridge data continues into one chain of ``blocks`` areas full of name parts.

    pycdlib follows every record's chain to its end and keeps every part: memory grows by about
    2.7 MiB per record here and CPU time by records x areas, for a 1.2 MB ISO.
    """
    names = [f"rec{i:05d}".ljust(23, "x") for i in range(records)]  # NM entries of 28 bytes, a CE's size
    files: dict[str, bytes | int] = {f"r/{n}": b"" for n in names}
    files["ce.bin"] = b"\0" * (blocks * 2048)
    iso = isos.make_iso(tmp / "ce.iso", files, "CECHAIN", joliet=False)[0]
    start = isos.extent(iso, "/CE.BIN;1")
    data = bytearray(iso.read_bytes())
    for k in range(blocks):  # 28 + 7 * 255 + 235 bytes: one whole block per area
        head = _ce(start + k + 1, 0, 2048) if k + 1 < blocks else _nm(b"a" * 23)
        body = head + _nm(b"a" * 250) * 7 + _nm(b"a" * 230)
        data[(start + k) * 2048:(start + k + 1) * 2048] = body
    for name in names:  # each record's own name becomes the way into the shared chain
        old = _nm(name.encode(), 0)
        assert data.count(old) == 1
        data = data.replace(old, _ce(start, 0, 2048))
    iso.write_bytes(bytes(data))
    return iso


def _follows_ce_chains(tmp: Path) -> bool:
    """Whether this pycdlib follows a chain of continuation areas (1.12, Debian 12's, refuses any)."""
    small = shared_ce_chains(tmp, records=1, blocks=3)
    fd = os.open(small, os.O_RDONLY)
    try:
        IsoReader(fd, os.fstat(fd).st_size, limits=None)
    except InvalidImage as e:
        assert "CE" in str(e), e
        return False
    finally:
        os.close(fd)
    small.unlink()
    return True


@pytest.mark.parametrize(("limits", "error"), [
    (Limits(memory=192 << 20), "more than 201326592 bytes of memory"),
    (Limits(cpu=1), "more than 1 s of CPU time"),
    (Limits(wall=0.8), "more than 0.8 s"),
])
def test_metadata_parsing_is_bounded(tmp_path: Path, limits: Limits, error: str) -> None:
    if not _follows_ce_chains(tmp_path):
        error = "Only single CE record supported"  # refused by pycdlib itself, at once
    iso = shared_ce_chains(tmp_path)
    env = make_env(tmp_path / "pxed")
    before_tree, before_catalog = env.tree(), env.catalog()
    fd = os.open(iso, os.O_RDONLY)
    started = time.monotonic()
    try:
        with pytest.raises(InvalidImage, match=error) as refused:
            import_iso(fd, Request(name="ce", limits=limits), env.service.store())
    finally:
        os.close(fd)
    assert time.monotonic() - started < 20
    assert refused.value.hint and (error.startswith("Only") or "ParseMemory=" in refused.value.hint)
    assert env.catalog() == before_catalog and env.tree() == before_tree
    env.assert_no_leftovers()


def test_the_parse_limits_come_from_pxed_conf(tmp_path: Path) -> None:
    """[Images] ParseTime= (and ParseMemory=, ParseCPU=) reach the import the service runs."""
    if not _follows_ce_chains(tmp_path):
        pytest.skip("this pycdlib refuses chained continuation areas at once: no limit is reached")
    iso = shared_ce_chains(tmp_path)
    env = make_env(tmp_path / "pxed", "[Images]\nParseTime=1\nParseCPU=60\nParseMemory=900M\n")
    assert (env.service.config.image_parse_time, env.service.config.image_parse_memory) == (1, 900 << 20)
    started = time.monotonic()
    with pytest.raises(InvalidImage, match=r"more than 1 s") as refused:
        env.add(iso, "ce")
    assert time.monotonic() - started < 10 and "ParseTime=" in (refused.value.hint or "")
    env.assert_no_leftovers()


def test_cancel_stops_metadata_parsing_at_once(tmp_path: Path) -> None:
    if not _follows_ce_chains(tmp_path):
        pytest.skip("this pycdlib refuses chained continuation areas at once: nothing to cancel")
    iso = shared_ce_chains(tmp_path)
    env = make_env(tmp_path / "pxed")
    before = env.tree()
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        env.add(iso, "ce", cancel=cancel)
    assert time.monotonic() - started < 2.5  # parsing alone takes about 10 s here
    timer.join()
    assert env.tree() == before and env.catalog() == ()
    env.assert_no_leftovers()


def test_the_parser_runs_in_a_limited_child(tmp_path: Path) -> None:
    """The listing comes from another process; this one never imports more than it had."""
    iso, _ = isos.build("generic", tmp_path)
    fd = os.open(iso, os.O_RDONLY)
    try:
        here = IsoReader(fd, os.fstat(fd).st_size, limits=None)
        there = IsoReader(fd, os.fstat(fd).st_size)
        assert here.to_json() == there.to_json() and "boot/vmlinuz" in there.files
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the caller's offset never moves
    finally:
        os.close(fd)


def test_a_big_listing_with_many_boot_configs_imports_in_seconds(tmp_path: Path) -> None:
    """20,000 entries and 32 configs of 2,400 stanzas naming missing initrds (5.9 MB): 325 s before, 1.6 s now."""
    files: dict[str, bytes | int] = {f"d{i % 50}/f{i}": b"" for i in range(20_000)}
    files["boot/k"] = isos.kernel()
    for c in range(32):
        stanzas = "".join(f"label {j:x}\nlinux /boot/k\ninitrd m{j:x}\n" for j in range(3000))
        files[f"isolinux/c{c:02d}.cfg"] = stanzas.encode()[:65000]  # within what pxed reads of a config
    iso = isos.make_iso(tmp_path / "big.iso", files, "BIGLIST")[0]
    env = make_env(tmp_path / "pxed")
    started = time.monotonic()
    rec = env.add(iso, "big")
    assert time.monotonic() - started < 15
    assert rec.detection.memdisk  # no stanza boots: served whole
    env.assert_complete(rec)


@pytest.mark.parametrize("listing", [
    {"files": [["../etc/passwd", "/x", [[0, 10]]]]},
    {"files": [["a\nb", "/x", [[0, 10]]]]},
    {"files": [["boot/k", "/x", [[-1, 10]]]]},
    {"files": [["boot/k", "/x", [[0, 1 << 40]]]]},
    {"files": [["boot/k", "/x", "nope"]]},
    {"files": "nope"},
    {},
])
def test_a_listing_from_the_child_is_checked_again(tmp_path: Path, listing: dict[str, object]) -> None:
    iso, _ = isos.build("generic", tmp_path)
    fd = os.open(iso, os.O_RDONLY)
    try:
        reader = IsoReader(fd, os.fstat(fd).st_size, limits=None)
        reader.files = {}
        with pytest.raises(InvalidImage, match="listing pxed cannot use"):
            reader._load({"label": "X", "namespace": "rr_path", "dropped": [], **listing})
    finally:
        os.close(fd)
