"""Detection as pure functions: listings and config texts in, Detection out (no ISO needed)."""

from __future__ import annotations

import time

import pytest

from pxed.errors import InvalidImage, InvalidName, UnknownLayout
from pxed.images import profiles
from pxed.images.importer import Request, choose, name_and_title

ARCH = {"arch/boot/x86_64/vmlinuz-linux": 1, "arch/boot/x86_64/initramfs-linux.img": 1,
        "arch/x86_64/airootfs.erofs": 1}


def test_archiso_variants() -> None:
    det = profiles.detect(ARCH, {}, "ARCH_202404")
    assert det is not None and det.profile == "archiso" and det.version == "202404"
    assert det.initrds == ("arch/boot/x86_64/initramfs-linux.img",)  # no microcode images on this ISO
    assert det.cmdline == "archisobasedir=arch archiso_http_srv=http://{server}/{base}/ ip=dhcp"
    assert det.sysappend == 2 and "arch/x86_64/airootfs.erofs" in det.files
    signed = {**ARCH, "arch/x86_64/airootfs.erofs.sig": 1, "arch/boot/amd-ucode.img": 1}
    det = profiles.detect(signed, {}, None)
    assert det is not None and det.cmdline.endswith(" verify=y") and "checksum=y" not in det.cmdline
    assert det.initrds[0] == "arch/boot/amd-ucode.img"  # microcode first
    assert profiles.detect({k: 1 for k in ARCH if "airootfs" not in k}, {}, None) is None  # no root image


def test_profile_order_and_markers() -> None:
    live = {"live/vmlinuz": 1, "live/initrd.img": 1, "live/filesystem.squashfs": 1}
    assert profiles.detect(live, {}, None).profile == "debian-live"  # type: ignore[union-attr]
    cz = {**live, "Clonezilla-Live-Version": 1}
    det = profiles.detect(cz, {"Clonezilla-Live-Version": b"clonezilla-live-3.2.0-5-amd64\n"}, None)
    assert det is not None and det.profile == "clonezilla" and det.version == "clonezilla-live-3.2.0-5-amd64"
    fedora = {"isolinux/vmlinuz": 1, "isolinux/initrd.img": 1, "LiveOS/squashfs.img": 1}
    det = profiles.detect(fedora, {}, "Fedora-KDE-Live-x86_64-40-1-14")
    assert det is not None and det.kernel == "isolinux/vmlinuz" and det.version == "40"
    memtest = {"boot/memtest.bin": 1}
    assert profiles.detect(memtest, {}, "DATA") is None  # a file name alone is not enough
    assert profiles.detect(memtest, {}, "MT86PLUS_64").profile == "memtest86+"  # type: ignore[union-attr]


def test_version_texts_are_bounded_words() -> None:
    det = profiles.detect({**ARCH, "arch/version": 1}, {"arch/version": b"\n2026.11.01\nAPPEND init=/bin/sh"}, None)
    assert det is not None and det.version == "2026.11.01"
    det = profiles.detect({**ARCH, "arch/version": 1}, {"arch/version": b"\x00\n\r"}, None)
    assert det is not None and det.version is None


SYSLINUX = b"""DEFAULT second
LABEL first
  KERNEL /boot/first
  APPEND initrd=/boot/first.gz quiet
LABEL second
  LINUX vmlinuz
  INITRD initrd.img,extra.img
  APPEND root=live:CDLABEL=X BOOT_IMAGE=x $foo ok
"""


def test_generic_scanner_syslinux() -> None:
    listing = {"isolinux/isolinux.cfg": 1, "isolinux/vmlinuz": 1, "isolinux/initrd.img": 1, "isolinux/extra.img": 1,
               "boot/first": 1, "boot/first.gz": 1}
    det = profiles.detect(listing, {"isolinux/isolinux.cfg": SYSLINUX}, "X")
    assert det is not None and det.profile == "generic"
    assert (det.kernel, det.initrds) == ("isolinux/vmlinuz", ("isolinux/initrd.img", "isolinux/extra.img"))
    assert det.cmdline == "root=live:CDLABEL=X ok"  # DEFAULT first; BOOT_IMAGE and $variables dropped
    listing.pop("isolinux/extra.img")
    det = profiles.detect(listing, {"isolinux/isolinux.cfg": SYSLINUX}, "X")
    assert det is not None and det.kernel == "boot/first" and det.cmdline == "quiet"


@pytest.mark.parametrize("cfg", [
    b"LABEL x\n KERNEL ../../../etc/passwd\n APPEND initrd=/boot/i\n",  # out of the ISO
    b"LABEL x\n KERNEL /boot/k\n APPEND initrd=../../x\n",
    b"LABEL x\n KERNEL /boot/k\n",  # no initrd: iPXE-like, boots better whole
    b"LABEL x\n KERNEL /boot/k.c32\n APPEND initrd=/boot/i\n",  # a syslinux module
    b"LABEL x\n KERNEL /boot/missing\n APPEND initrd=/boot/i\n",
    b"LABEL x\n KERNEL /boot/k\n APPEND initrd=/boot/i \x1b[2Jevil\n",  # control characters
    b"LABEL x\n KERNEL /boot/k\n APPEND initrd=/boot/i " + b"a" * 2000 + b"\n",
])
def test_generic_scanner_refuses(cfg: bytes) -> None:
    listing = {"isolinux/isolinux.cfg": 1, "boot/k": 1, "boot/i": 1, "boot/k.c32": 1}
    assert profiles.detect(listing, {"isolinux/isolinux.cfg": cfg}, "X") is None


def test_generic_scanner_grub() -> None:
    cfg = b"menuentry 'A' {\n linux /k quiet 'x y'\n initrd /i1 /i2\n}\nmenuentry 'B' {\n linux /k2\n initrd /i\n}\n"
    det = profiles.detect({"boot/grub/grub.cfg": 1, "k": 1, "i1": 1, "i2": 1}, {"boot/grub/grub.cfg": cfg}, None)
    assert det is not None and det.initrds == ("i1", "i2") and det.cmdline == "quiet x y"


def test_texts_wanted_are_few_and_known() -> None:
    listing = {f"isolinux/{i}.cfg": 1 for i in range(100)} | {"arch/version": 1, "a.cfg": 1}
    want = profiles.texts_wanted(listing)
    assert "arch/version" in want and "a.cfg" not in want and len(want) <= profiles.MAX_CONFIGS + 7


def test_choose_names_and_titles() -> None:
    with pytest.raises(UnknownLayout):
        choose(Request(allow_memdisk=False), {"a": 1}, {}, "X")
    assert choose(Request(), {"a": 1}, {}, "X").memdisk
    assert choose(Request(memdisk=True), ARCH, {}, "X").memdisk
    with pytest.raises(UnknownLayout):
        choose(Request(memdisk=False), {"a": 1}, {}, "X")
    for label, name in (("ARCH_202611", "arch_202611"), ("  My Disc!! 1.0 ", "my-disc-1.0"), ("__x__", "x")):
        assert profiles.name_from_label(label) == name
    for label in (None, "", "!!!", "\u00e9\u00e9"):
        assert profiles.name_from_label(label) is None
    with pytest.raises(InvalidName):
        name_and_title(Request(), profiles.memdisk(None))
    det = profiles.memdisk("\x1b[31mred")
    assert name_and_title(Request(name="x"), det) == ("x", "x")  # an unprintable label never becomes a title


@pytest.mark.parametrize(("listing", "cfg"), [
    ({"boot/k": 1, "boot/initrd.gz,EXTRA.img": 1},  # syslinux would split it at the comma
     b"menuentry x {\n linux /boot/k\n initrd /boot/initrd.gz,EXTRA.img\n}\n"),
    ({"boot/%2e%2e/k": 1, "boot/i": 1},  # an HTTP server decodes it to boot/../k
     b"menuentry x {\n linux /boot/%2e%2e/k\n initrd /boot/i\n}\n"),
    ({"boot/k k": 1, "boot/i": 1}, b"menuentry x {\n linux '/boot/k k'\n initrd /boot/i\n}\n"),
])
def test_names_no_menu_can_hold_are_refused_at_detection(listing: dict[str, int], cfg: bytes) -> None:
    with pytest.raises(InvalidImage, match="no boot menu or URL can hold") as refused:
        profiles.detect({**listing, "boot/grub/grub.cfg": 1}, {"boot/grub/grub.cfg": cfg}, "X")
    assert refused.value.hint
    arch = {k.replace("vmlinuz-linux", "vmlinuz-a,b"): v for k, v in ARCH.items()}
    with pytest.raises(InvalidImage):
        profiles.detect(arch, {}, None)


def test_loader_parameters_are_not_carried_over() -> None:
    cfg = (b"menuentry x {\n linux /k initrd=/evil.img BOOT_IMAGE=/other BOOTIF=01-aa quiet\n"
           b" initrd /i\n}\n")
    det = profiles.detect({"boot/grub/grub.cfg": 1, "k": 1, "i": 1, "evil.img": 1}, {"boot/grub/grub.cfg": cfg}, None)
    assert det is not None and det.cmdline == "quiet" and det.files == ("k", "i")
    cfg = b"LABEL x\n KERNEL /k\n INITRD /i\n APPEND initrd=/evil.img INITRD=/e2 quiet\n"
    det = profiles.detect({"isolinux/isolinux.cfg": 1, "k": 1, "i": 1}, {"isolinux/isolinux.cfg": cfg}, None)
    assert det is not None and det.cmdline == "quiet" and det.files == ("k", "i")


def test_big_listings_and_configs_are_scanned_in_linear_time() -> None:
    """20,000 entries and 32 configs of 3,000 stanzas each, none of them bootable: once ~287 s, now well under 5."""
    listing = {f"d{i % 50}/f{i}": 1 for i in range(20_000)} | {"k": 1}
    texts: dict[str, bytes] = {}
    for c in range(32):
        listing[f"isolinux/c{c}.cfg"] = 1
        texts[f"isolinux/c{c}.cfg"] = "".join(f"LABEL {j}\nLINUX /k\nINITRD m{j}\n" for j in range(3000)).encode()
        listing[f"boot/grub/g{c}.cfg"] = 1
        texts[f"boot/grub/g{c}.cfg"] = "".join(f"menuentry {j} {{\nlinux /k\ninitrd m{j}\n}}\n"
                                               for j in range(3000)).encode()
    start = time.perf_counter()
    assert len(profiles.texts_wanted(listing)) <= profiles.MAX_CONFIGS + len(profiles.PROFILES)
    assert profiles.detect(listing, texts, "X") is None
    unbounded = time.perf_counter() - start
    assert unbounded < 5, unbounded
    # the entries read are bounded: one bootable entry after the bound is not looked at
    texts["isolinux/c0.cfg"] += b"LABEL late\nLINUX /k\nINITRD /k\n"
    assert profiles.detect(listing, texts, "X") is None
    assert profiles.detect(listing, {"isolinux/c0.cfg": b"LABEL late\nLINUX /k\nINITRD /k\n"}, "X") is not None
