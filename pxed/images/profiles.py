"""What an ISO is and how it boots over HTTP: layout profiles as data, detection as pure functions.

Input is the ISO's checked listing (relative path → size), a few small text files
(version files, boot loader configs) and the volume label; output is a
:class:`~pxed.images.catalog.Detection` naming the files to extract, the kernel, the
initrds and the command line.  No I/O here, so every rule has a fast unit test.

Command lines may hold ``{server}`` (the pxed address and port, filled in when menus
are rendered), ``{base}`` (the image's URL path, ``images/<id>``), ``{iso}`` (the file
name of the whole ISO, for profiles that serve it too) and ``{iso_kib}`` (its size in KiB
plus a tenth: a RAM disk that holds it).  See
``shared/notes/iso-layouts.md`` for the sources of each command line.

Order matters: the first profile whose markers all match wins; then the generic scanner
of the ISO's own isolinux/syslinux/grub configuration; then (if allowed) memdisk.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pxed import rules
from pxed.errors import InvalidImage
from pxed.images.catalog import Detection

MAX_CMDLINE = 1800  # leaves room for BOOTIF and initrd= within syslinux's 2047 bytes
MAX_SIDECARS = 32  # files one ``every`` pick takes at most
# What the generic scanner reads at most, whatever the configs hold (each is at most
# pxed.images.iso.MAX_TEXT bytes, and at most MAX_CONFIGS of them are read).
MAX_STANZAS = 2048  # boot entries, over all configs
MAX_REFS = 16  # initrds of one entry
_VERSION = r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,39}"


@dataclass(frozen=True, slots=True)
class Pick:
    """Files chosen by globs (one path component per glob component, case-insensitive).

    The first glob with a match gives the file (the first match in sorted order); with
    ``every`` all matches of all globs are taken (signature sidecars).
    """

    globs: tuple[str, ...]
    required: bool = True
    every: bool = False


@dataclass(frozen=True, slots=True)
class Flag:
    """A command line argument added when a file exists (verification of sidecars)."""

    glob: str
    arg: str


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str
    markers: tuple[str, ...]  # globs that must all match
    kernel: Pick
    initrds: tuple[Pick, ...] = ()
    extra: tuple[Pick, ...] = ()  # served beside the kernel: root images and their sidecars
    cmdline: str = ""
    flags: tuple[Flag, ...] = ()
    sysappend: int | None = None
    label: str | None = None  # a regex the volume label must match (search), if set
    version_file: str | None = None  # first _VERSION-like word of this file is the version
    label_version: str | None = None  # regex with one group, on the label, if no version file
    whole_iso: bool = False  # the ISO itself is served too (as {iso})


ARCHISO = Profile(
    name="archiso", title="Arch Linux",
    markers=("arch/boot/x86_64/vmlinuz-*", "arch/boot/x86_64/initramfs-*.img"),
    kernel=Pick(("arch/boot/x86_64/vmlinuz-linux", "arch/boot/x86_64/vmlinuz-*")),
    # microcode first: the initramfs of ISOs before archiso v77 has none of its own
    initrds=(Pick(("arch/boot/intel-ucode.img",), required=False), Pick(("arch/boot/amd-ucode.img",), required=False),
             Pick(("arch/boot/x86_64/initramfs-linux.img", "arch/boot/x86_64/initramfs-*.img"))),
    extra=(Pick(("arch/x86_64/airootfs.sfs", "arch/x86_64/airootfs.erofs")),
           Pick(("arch/x86_64/airootfs.sha512", "arch/x86_64/airootfs.*.sig", "arch/version"),
                required=False, every=True)),
    cmdline="archisobasedir=arch archiso_http_srv=http://{server}/{base}/ ip=dhcp",
    flags=(Flag("arch/x86_64/airootfs.sha512", "checksum=y"), Flag("arch/x86_64/airootfs.*.cms.sig", "cms_verify=y"),
           Flag("arch/x86_64/airootfs.sfs.sig", "verify=y"), Flag("arch/x86_64/airootfs.erofs.sig", "verify=y")),
    sysappend=2, version_file="arch/version", label_version=r"^ARCH_(\d{6})$",
)

CLONEZILLA = Profile(
    name="clonezilla", title="Clonezilla live",
    markers=("Clonezilla-Live-Version", "live/filesystem.squashfs"),
    kernel=Pick(("live/vmlinuz", "live/vmlinuz*")),
    initrds=(Pick(("live/initrd.img", "live/initrd.img*")),),
    extra=(Pick(("live/filesystem.squashfs",)),),
    cmdline="boot=live username=user union=overlay config components noswap edd=on nomodeset locales= "
            "keyboard-layouts= ocs_live_run=\"ocs-live-general\" ocs_live_extra_param=\"\" ocs_live_batch=no "
            "net.ifnames=0 nosplash noprompt fetch=http://{server}/{base}/live/filesystem.squashfs",
    sysappend=2, version_file="Clonezilla-Live-Version",
)

DEBIAN_LIVE = Profile(
    name="debian-live", title="Debian live",
    markers=("live/filesystem.squashfs", "live/vmlinuz*", "live/initrd*"),
    kernel=Pick(("live/vmlinuz", "live/vmlinuz*")),
    initrds=(Pick(("live/initrd.img", "live/initrd.img*", "live/initrd*")),),
    extra=(Pick(("live/filesystem.squashfs",)),),
    cmdline="boot=live components fetch=http://{server}/{base}/live/filesystem.squashfs",
    sysappend=2, label_version=r"^d-live ([0-9][0-9.]*)",
)

UBUNTU = Profile(
    name="ubuntu-casper", title="Ubuntu live",
    markers=("casper/vmlinuz*", "casper/initrd*", "casper/filesystem.squashfs"),
    kernel=Pick(("casper/vmlinuz", "casper/vmlinuz.efi", "casper/vmlinuz*")),
    initrds=(Pick(("casper/initrd", "casper/initrd.lz", "casper/initrd.gz", "casper/initrd*")),),
    extra=(Pick(("casper/filesystem.squashfs",)),),
    cmdline="boot=casper netboot=url url=http://{server}/{base}/casper/filesystem.squashfs ip=dhcp",
    sysappend=2, label_version=r"^Ubuntu[A-Za-z -]* ([0-9][0-9.]*)",
)

# Newer Ubuntu ISOs (server installer, layered squashfs): casper loads the whole ISO into RAM.
UBUNTU_ISO = Profile(
    name="ubuntu-casper-iso", title="Ubuntu",
    markers=("casper/vmlinuz*", "casper/initrd*"),
    kernel=UBUNTU.kernel, initrds=UBUNTU.initrds,
    cmdline="boot=casper root=/dev/ram0 ramdisk_size={iso_kib} cloud-config-url=/dev/null ip=dhcp "
            "url=http://{server}/{base}/{iso}",
    sysappend=2, label_version=UBUNTU.label_version, whole_iso=True,
)

FEDORA_LIVE = Profile(
    name="fedora-live", title="Fedora live",
    markers=("LiveOS/squashfs.img",),
    kernel=Pick(("images/pxeboot/vmlinuz", "isolinux/vmlinuz", "boot/x86_64/loader/linux")),
    initrds=(Pick(("images/pxeboot/initrd.img", "isolinux/initrd.img", "boot/x86_64/loader/initrd")),),
    extra=(Pick(("LiveOS/squashfs.img",)),),
    cmdline="root=live:http://{server}/{base}/LiveOS/squashfs.img rd.live.image ip=dhcp rd.neednet=1 ro "
            "rd.lvm=0 rd.luks=0 rd.md=0 rd.dm=0",
    sysappend=2, label_version=r"-(\d+)(?:-[\d.]+)*$",
)

MEMTEST = Profile(
    name="memtest86+", title="Memtest86+",
    markers=(),
    kernel=Pick(("boot/memtest86+/memtest", "boot/memtest.bin", "boot/memtest86+.bin", "boot/memtest", "memtest.bin",
                 "memtest86+.bin", "memtest", "isolinux/memtest", "boot/memtest*.bin")),
    label=r"(?i)memtest|mt86", label_version=r"(?i)mt86plus_?v?(\d+\.\d+[\d.]*)",
)

PROFILES: tuple[Profile, ...] = (ARCHISO, CLONEZILLA, DEBIAN_LIVE, UBUNTU, UBUNTU_ISO, FEDORA_LIVE, MEMTEST)

# Where the generic scanner looks for the ISO's own boot loader configuration.
CONFIG_GLOBS: tuple[str, ...] = (
    "isolinux/*.cfg", "isolinux.cfg", "syslinux/*.cfg", "syslinux.cfg", "boot/isolinux/*.cfg",
    "boot/syslinux/*.cfg", "boot/grub/grub.cfg", "boot/grub/*.cfg", "EFI/BOOT/grub.cfg", "EFI/boot/grub.cfg",
)
MAX_CONFIGS = 32


# ------------------------------------------------------------------------------ matching


class Paths:
    """A listing indexed once, so that detection costs time linear in its size.

    A glob (one path component per glob component, case-insensitive) is matched only against
    the paths of its depth, and of its first component when that has no wildcard; results are
    cached (the profiles share many globs).  ``lookup`` finds a path case-insensitively.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self.sorted = sorted(paths)
        self._by_depth: dict[int, list[tuple[list[str], str]]] = {}
        self._by_head: dict[tuple[int, str], list[tuple[list[str], str]]] = {}
        self._lower: dict[str, str] = {}
        self._exact = set(self.sorted)
        self._cache: dict[str, tuple[str, ...]] = {}
        for path in self.sorted:
            low = path.lower()
            parts = low.split("/")
            self._by_depth.setdefault(len(parts), []).append((parts, path))
            self._by_head.setdefault((len(parts), parts[0]), []).append((parts, path))
            self._lower.setdefault(low, path)

    def matches(self, glob: str) -> tuple[str, ...]:
        """The paths ``glob`` matches, in sorted order."""
        hit = self._cache.get(glob)
        if hit is None:
            g = glob.lower().split("/")
            pool = self._by_depth.get(len(g), []) if _MAGIC.search(g[0]) else self._by_head.get((len(g), g[0]), [])
            hit = tuple(p for parts, p in pool
                        if all(fnmatch.fnmatchcase(pc, gc) for gc, pc in zip(g, parts, strict=True)))
            self._cache[glob] = hit
        return hit

    def lookup(self, path: str) -> str | None:
        """``path`` if listed, else the listed path equal to it but for case (the first in sorted order)."""
        return path if path in self._exact else self._lower.get(path.lower())


_MAGIC = re.compile(r"[*?\[]")


def matches(glob: str, paths: Iterable[str]) -> list[str]:
    return list(Paths(paths).matches(glob))


def _pick(pick: Pick, paths: Paths) -> list[str]:
    found: dict[str, None] = {}
    for g in pick.globs:
        m = paths.matches(g)
        if m and not pick.every:
            return [m[0]]
        found.update(dict.fromkeys(m))
    return list(found)[:MAX_SIDECARS]


def _version(profile: Profile, texts: Mapping[str, bytes], paths: Paths, label: str | None) -> str | None:
    if profile.version_file:
        for p in paths.matches(profile.version_file):
            text = texts.get(p, b"").decode("utf-8", "replace")
            m = re.search(_VERSION, text)
            if m:
                return m.group(0)
    if profile.label_version and label:
        m = re.search(profile.label_version, label)
        if m and re.fullmatch(_VERSION, m.group(1)):
            return m.group(1)
    return None


def texts_wanted(listing: Iterable[str] | Paths) -> list[str]:
    """The small files :func:`detect` wants to read: version files and boot loader configs."""
    paths = listing if isinstance(listing, Paths) else Paths(listing)
    want: dict[str, None] = {}
    for prof in PROFILES:
        if prof.version_file:
            want.update(dict.fromkeys(paths.matches(prof.version_file)))
    versions = len(want)
    for g in CONFIG_GLOBS:
        for p in paths.matches(g):
            if len(want) >= versions + MAX_CONFIGS:
                break
            want.setdefault(p)
    return list(want)[:MAX_CONFIGS + len(PROFILES)]


def check_boot_files(files: Iterable[str], what: str) -> None:
    """Refuse a kernel or initrd path no menu line or URL may name (a comma, a space, a '%'...)."""
    for f in files:
        try:
            rules.check_boot_path(f)
        except ValueError:
            raise InvalidImage(f"the {what} {f[:120]!r} has a name no boot menu or URL can hold as it is",
                               hint=f"pxed serves only files named with {rules.BOOT_PATH_HINT}; "
                                    "the ISO may be forged, or rename the file and rebuild it") from None


def _apply(profile: Profile, paths: Paths, texts: Mapping[str, bytes], label: str | None) -> Detection | None:
    if profile.label and not (label and re.search(profile.label, label)):
        return None
    if not all(paths.matches(m) for m in profile.markers):
        return None
    kernel = _pick(profile.kernel, paths)
    if not kernel:
        return None
    initrds: list[str] = []
    for pick in profile.initrds:
        got = _pick(pick, paths)
        if pick.required and not got:
            return None
        initrds += got
    extra: list[str] = []
    for pick in profile.extra:
        got = _pick(pick, paths)
        if pick.required and not got:
            return None
        extra += [x for x in got if x not in extra]
    files = [kernel[0], *initrds, *extra]
    check_boot_files(files, f"{profile.title} file")
    args = [profile.cmdline] if profile.cmdline else []
    args += [f.arg for f in profile.flags if paths.matches(f.glob) and f.arg not in args]
    return Detection(profile=profile.name, version=_version(profile, texts, paths, label), label=label,
                     files=tuple(files), kernel=kernel[0], initrds=tuple(initrds), cmdline=" ".join(args),
                     sysappend=profile.sysappend)


def detect(listing: Mapping[str, int], texts: Mapping[str, bytes], label: str | None) -> Detection | None:
    """The first profile that fits, else the ISO's own boot config, else None (unknown layout).

    Raises :class:`~pxed.errors.InvalidImage` when the kernel or an initrd it would offer has a
    name no menu can hold (:func:`check_boot_files`).
    """
    paths = Paths(listing)
    for profile in PROFILES:
        det = _apply(profile, paths, texts, label)
        if det is not None:
            return det
    return scan_configs(paths, texts, label)


def whole_iso(det: Detection) -> bool:
    """Whether the ISO itself must be served too (memdisk, or a profile that boots from it)."""
    return det.memdisk or "{iso}" in det.cmdline


def memdisk(label: str | None) -> Detection:
    return Detection(profile="memdisk", label=label, memdisk=True)


def title_of(det: Detection) -> str:
    prof = {p.name: p.title for p in PROFILES}.get(det.profile)
    if prof:
        return f"{prof} {det.version}" if det.version else prof
    try:
        return rules.check_title(det.label) if det.label else ""
    except ValueError:
        return ""


def name_from_label(label: str | None) -> str | None:
    """An image id made from a volume label ("ARCH_202611" → "arch_202611"), or None."""
    if not label:
        return None
    name = re.sub(r"[^a-z0-9._-]+", "-", label.lower()).strip("-._")[:63].rstrip("-._")
    return name if rules.ID_RE.match(name) else None


# ------------------------------------------------------------------------------ generic scanner


@dataclass(frozen=True, slots=True)
class BootStanza:
    kernel: str
    initrds: tuple[str, ...]
    append: str


def _resolve(ref: str, base_dir: str, paths: Paths) -> str | None:
    """A path named by a config, inside the ISO and present in the listing, or None."""
    ref = ref.strip().strip('"')
    if not ref or "$" in ref or "\\" in ref:
        return None
    joined = posixpath.normpath(ref.lstrip("/") if ref.startswith("/") else posixpath.join(base_dir, ref))
    if joined.startswith("../") or joined in ("..", ".") or joined.startswith("/"):
        return None
    return paths.lookup(joined)


def _syslinux_stanzas(text: str) -> Iterable[tuple[str, str, str]]:
    """(kernel, initrd list, append) per LABEL, DEFAULT's label first."""
    stanzas: dict[str, dict[str, str]] = {}  # in file order; a repeated LABEL continues its stanza
    default = None
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        words = raw.strip().split(None, 1)
        if not words:
            continue
        key, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
        if key == "default":
            default = rest.split()[0] if rest else None
        elif key == "label":
            if rest not in stanzas and len(stanzas) >= MAX_STANZAS:
                break
            current = stanzas.setdefault(rest, {})
        elif current is not None and key in ("kernel", "linux"):
            current["kernel"] = rest.split()[0] if rest else ""
        elif current is not None and key == "initrd":
            current["initrd"] = rest
        elif current is not None and key == "append":
            current["append"] = rest
    order = list(stanzas)
    if default in stanzas:
        order.remove(default)
        order.insert(0, default)
    for name in order:
        s = stanzas[name]
        append = s.get("append", "")
        initrd = s.get("initrd", "")
        kept = []
        for word in append.split():
            if word.startswith("initrd="):
                initrd = initrd or word[len("initrd="):]
            else:
                kept.append(word)
        yield s.get("kernel", ""), initrd.replace(",", " "), " ".join(kept)


_GRUB_LINUX = ("linux", "linuxefi", "linux16")
_GRUB_INITRD = ("initrd", "initrdefi", "initrd16")
_GRUB_WORDS = frozenset(("menuentry", "submenu", *_GRUB_LINUX, *_GRUB_INITRD))


def _grub_stanzas(text: str) -> Iterable[tuple[str, str, str]]:
    kernel, append = "", ""
    for raw in text.splitlines():
        head = raw.split(None, 1)
        if not head or head[0] not in _GRUB_WORDS:  # shlex only the lines that matter: it is slow
            continue
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            continue
        if not words:
            continue
        if words[0] in ("menuentry", "submenu"):
            kernel, append = "", ""
        elif words[0] in _GRUB_LINUX and len(words) > 1:
            kernel, append = words[1], " ".join(words[2:])
        elif words[0] in _GRUB_INITRD and kernel:
            yield kernel, " ".join(words[1:]), append


def _stanzas(path: str, text: str) -> Iterable[tuple[str, str, str]]:
    return _grub_stanzas(text) if path.lower().endswith("grub.cfg") or "/grub/" in path.lower() \
        else _syslinux_stanzas(text)


def carried_cmdline(append: str) -> str:
    """The words of an ISO's own command line that go into pxed's menu.

    Left out: ``$variables`` (GRUB's, meaningless here) and the words the boot loader handles
    itself (:data:`pxed.rules.LOADER_PARAMS`: ``initrd=``, ``BOOT_IMAGE=``...), which would load
    or name other files than the menu's own INITRD line.
    """
    return " ".join(w for w in append.split() if "$" not in w and not rules.is_loader_param(w))


def scan_configs(listing: Mapping[str, int] | Paths, texts: Mapping[str, bytes],
                 label: str | None) -> Detection | None:
    """The first boot entry of the ISO's own config with a kernel and an initrd that both exist.

    Syslinux paths are relative to the config's directory, or absolute from the ISO root;
    ``$variables``, ``..`` out of the ISO, and paths a menu cannot name are refused.  A
    kernel without an initrd (iPXE, a memory tester, a chainloader) is not taken: such
    ISOs boot better whole, through memdisk.  At most :data:`MAX_STANZAS` entries of
    :data:`MAX_REFS` initrds each are looked at, each path in one dictionary lookup.
    """
    paths = listing if isinstance(listing, Paths) else Paths(listing)
    seen = 0
    for cfg in dict.fromkeys(p for g in CONFIG_GLOBS for p in paths.matches(g)):
        if cfg not in texts:
            continue
        text = texts[cfg].decode("utf-8", "replace")
        base = posixpath.dirname(cfg)
        for kref, iref, append in _stanzas(cfg, text):
            seen += 1
            if seen > MAX_STANZAS:
                return None
            kernel = _resolve(kref, base, paths) if kref else None
            if kernel is None or kernel.lower().endswith((".c32", ".com", ".0", ".bin", ".efi")) \
                    or posixpath.basename(kernel.lower()) in ("memdisk", "pxelinux.0"):
                continue
            refs = iref.split()
            if len(refs) > MAX_REFS:
                continue
            initrds = [_resolve(r, base, paths) for r in refs]
            if not initrds or any(i is None for i in initrds):
                continue
            got = (kernel, *[i for i in initrds if i is not None])
            cmdline = carried_cmdline(append)
            if len(cmdline) > MAX_CMDLINE or not cmdline.isprintable():
                continue
            check_boot_files(got, f"kernel or initrd named by {cfg}")
            return Detection(profile="generic", label=label, files=got, kernel=kernel, initrds=got[1:],
                             cmdline=cmdline)
    return None
