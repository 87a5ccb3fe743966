"""pxed.conf: systemd-style INI plus ``pxed.conf.d/*.conf`` drop-ins → frozen :class:`Config`.

Every setting is declared once in :data:`SETTINGS`; that table drives parsing,
defaults, ``pxed --dump-config`` and the man page's list.  A bad file raises
:class:`~pxed.errors.ConfigError` naming the file, line and key; nothing is
half-applied because the whole :class:`Config` is built only at the end.

Syntax (as systemd's unit files): ``[Section]`` headers, ``Key=Value`` lines,
``#`` or ``;`` comments on their own line, an empty value resets a setting to its
default.  Later files override earlier ones key by key; drop-ins are read in
lexical order of their file names.  ``[Entry ID]`` sections declare menu entries.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pxed import loaders, rules
from pxed.errors import ConfigError
from pxed.model import BootEntry, Firmware

DEFAULT_CONFIG_PATH = Path("/etc/pxed/pxed.conf")
CONFIG_ENV = "PXED_CONFIG"

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")
_BOOT_FILE_RE = re.compile(r"^[A-Za-z0-9._+@/-]{1,127}$")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class HttpBackend(enum.StrEnum):
    AUTO = "auto"
    DARKHTTPD = "darkhttpd"
    LIGHTTPD = "lighttpd"


@dataclass(frozen=True, slots=True)
class MenuConfig:
    title: str = "pxed network boot"
    timeout: int = 100  # tenths of a second, as syslinux's TIMEOUT
    serial: str = "0 115200"
    splash: str | None = None
    default: str | None = None
    memtest: bool = True
    hdt: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    interface: str | None = None
    allow_relay: bool = False
    vendor_classes: tuple[str, ...] = ()
    boot_root: Path = Path("/var/lib/pxed/boot")
    state_dir: Path = Path("/var/lib/pxed")
    http_port: int = 80
    http_backend: HttpBackend = HttpBackend.AUTO
    tftp_block_size: int | None = None
    loaders: Mapping[Firmware, str] = field(default_factory=lambda: loaders.DEFAULT_LOADERS)
    boot_files: Mapping[Firmware, str] = field(
        default_factory=lambda: MappingProxyType(dict(DEFAULT_BOOT_FILES))
    )
    ipxe_boot_file: str | None = None
    menu: MenuConfig = MenuConfig()
    entries: tuple[BootEntry, ...] = ()
    image_memdisk: bool = True
    image_max_bytes: int = 16 * 1024**3
    # the child process that reads an ISO's metadata is killed past these (pxed.images.iso.Limits)
    image_parse_memory: int = 1 << 30
    image_parse_cpu: int = 120
    image_parse_time: int = 300
    sources: tuple[Path, ...] = ()

    @property
    def configured(self) -> bool:
        """True when an interface is named: only then do the generator and daemon act."""
        return self.interface is not None

    def boot_file(self, firmware: Firmware) -> str | None:
        return self.boot_files.get(firmware)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (``pxed --dump-config``)."""

        def conv(v: Any) -> Any:
            if isinstance(v, Path):
                return os.fspath(v)
            if isinstance(v, enum.Enum):
                return v.value
            if isinstance(v, Mapping):
                return {str(conv(k)): conv(x) for k, x in v.items()}
            if isinstance(v, tuple | list):
                return [conv(x) for x in v]
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
            return v

        return {f.name: conv(getattr(self, f.name)) for f in dataclasses.fields(self)}


DEFAULT_BOOT_FILES: Mapping[Firmware, str] = MappingProxyType(
    {fw: loaders.get(name).boot_file(fw) for fw, name in loaders.DEFAULT_LOADERS.items()})


# --------------------------------------------------------------------------- parsers


def parse_boolean(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "yes", "y", "true", "t", "on"):
        return True
    if v in ("0", "no", "n", "false", "f", "off"):
        return False
    raise ValueError("expected a boolean (yes/no, true/false, 1/0, on/off)")


def _int_parser(lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n: int = int(value, 10)
        except ValueError:
            raise ValueError(f"expected a whole number from {lo} to {hi}") from None
        if not lo <= n <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}")
        return n

    return parse


def parse_size(value: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B?)?\s*", value, re.IGNORECASE)
    if not m:
        raise ValueError("expected a size such as 8G, 512M or 1073741824")
    exp = " KMGT".index(m.group(2).upper() or " ")
    return int(m.group(1)) * (1 << (10 * exp))


def parse_interface(value: str) -> str:
    if not _IFNAME_RE.match(value) or value in (".", ".."):
        raise ValueError("not a valid interface name (at most 15 characters, no spaces or slashes)")
    return value


def parse_abs_path(value: str) -> Path:
    p = Path(value)
    if not p.is_absolute() or ".." in p.parts or _CTRL_RE.search(value):
        raise ValueError("expected an absolute path without '..' or control characters")
    return p


def parse_boot_file(value: str) -> str:
    if not _BOOT_FILE_RE.match(value) or ".." in value.split("/") or value.startswith("/"):
        raise ValueError(
            "expected a path relative to the boot root made of letters, digits and ._+@/- "
            "(at most 127 characters, no '..')"
        )
    return value


def parse_loader(value: str) -> str:
    if value not in loaders.LOADERS:
        raise ValueError(f"unknown boot loader; known: {', '.join(sorted(loaders.LOADERS))}")
    return value


def parse_word_list(value: str) -> tuple[str, ...]:
    return tuple(value.split())




def parse_serial(value: str) -> str:
    if not re.fullmatch(r"[0-9]( [0-9]{3,7})?", value):
        raise ValueError("expected a serial port and speed such as '0 115200'")
    return value


# --------------------------------------------------------------------------- the table


def _loader_help(fw: Firmware, what: str) -> str:
    able = sorted(name for name, loader in loaders.LOADERS.items() if fw in loader.firmware)
    if not able:
        return f"Boot loader for {what} clients: none supports them yet; set {fw.name}= to a boot file yourself."
    fallback = loaders.DEFAULT_LOADERS.get(fw, "none")
    preferred = loaders.PREFERRED.get(fw)
    default = f"{preferred} when its files are installed, else {fallback}" if preferred else fallback
    return f"Boot loader for {what} clients ({', '.join(able)}): the boot file and the menus. Default: {default}."


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    dest: str  # dotted: "interface", "menu.title", "boot_files.bios"
    parse: Callable[[str], Any]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("Network", "Interface", "interface", parse_interface,
            "The one interface pxed serves (required). Its first IPv4 address is announced."),
    Setting("Network", "AllowRelay", "allow_relay", parse_boolean,
            "Answer requests forwarded by DHCP relays (giaddr set), by unicast to the relay."),
    Setting("Network", "VendorClass", "vendor_classes", parse_word_list,
            "Extra option-60 prefixes treated as PXE clients, besides PXEClient and HTTPClient."),
    Setting("Paths", "BootRoot", "boot_root", parse_abs_path,
            "The tree served read-only over TFTP and HTTP."),
    Setting("Paths", "StateDirectory", "state_dir", parse_abs_path,
            "Where the image catalog and staging area live (same file system as BootRoot)."),
    Setting("HTTP", "Port", "http_port", _int_parser(1, 65535), "TCP port of the HTTP server."),
    Setting("HTTP", "Backend", "http_backend", HttpBackend,
            "auto (darkhttpd if installed, else lighttpd), darkhttpd or lighttpd."),
    Setting("TFTP", "BlockSize", "tftp_block_size", _int_parser(512, 65464),
            "Largest TFTP block size offered; default: the interface MTU minus 32."),
    Setting("Boot", "BIOS", "boot_files.bios", parse_boot_file, "Boot file for BIOS clients (arch 0)."),
    Setting("Boot", "EFI32", "boot_files.efi32", parse_boot_file, "Boot file for ia32 UEFI (arch 6)."),
    Setting("Boot", "EFI64", "boot_files.efi64", parse_boot_file,
            "Boot file for x86-64 UEFI (arch 7 and 9)."),
    Setting("Boot", "ARM64", "boot_files.arm64", parse_boot_file, "Boot file for arm64 UEFI (arch 11)."),
    Setting("Boot", "HTTP32", "boot_files.http32", parse_boot_file,
            "File for ia32 UEFI HTTP Boot (arch 15), served over HTTP."),
    Setting("Boot", "HTTP64", "boot_files.http64", parse_boot_file,
            "File for x86-64 UEFI HTTP Boot (arch 16), served over HTTP."),
    Setting("Boot", "HTTPARM64", "boot_files.httparm64", parse_boot_file,
            "File for arm64 UEFI HTTP Boot (arch 19), served over HTTP."),
    *(Setting("Boot", f"{fw.name}Loader", f"loaders.{fw.value}", parse_loader, _loader_help(fw, what))
      for fw, what in ((Firmware.BIOS, "BIOS"), (Firmware.EFI32, "ia32 UEFI"), (Firmware.EFI64, "x86-64 UEFI"),
                       (Firmware.ARM64, "arm64 UEFI"), (Firmware.HTTP32, "ia32 UEFI HTTP Boot"),
                       (Firmware.HTTP64, "x86-64 UEFI HTTP Boot"), (Firmware.HTTPARM64, "arm64 UEFI HTTP Boot"))),
    Setting("Boot", "IPXE", "ipxe_boot_file", parse_boot_file,
            "Boot file for clients already running iPXE; default: the one for their arch."),
    Setting("Menu", "Title", "menu.title", rules.check_title, "Title shown above the menu."),
    Setting("Menu", "Timeout", "menu.timeout", _int_parser(0, 36000),
            "Tenths of a second before the default entry boots (0 waits for ever)."),
    Setting("Menu", "Serial", "menu.serial", parse_serial,
            "syslinux SERIAL directive: port and speed; 'no' disables."),
    Setting("Menu", "Splash", "menu.splash", parse_boot_file, "Background image (640x480 PNG) in the boot root."),
    Setting("Menu", "Default", "menu.default", lambda v: _parse_id(v), "Id of the entry booted on timeout."),
    Setting("Menu", "Memtest", "menu.memtest", parse_boolean, "Offer memtest86+ when it is installed."),
    Setting("Menu", "HDT", "menu.hdt", parse_boolean, "Offer the Hardware Detection Tool."),
    Setting("Images", "Memdisk", "image_memdisk", parse_boolean,
            "Boot ISOs of unknown layout whole through memdisk instead of refusing them."),
    Setting("Images", "MaxSize", "image_max_bytes", parse_size, "Largest ISO accepted for import."),
    Setting("Images", "ParseMemory", "image_parse_memory", parse_size,
            "Memory the process reading an ISO's metadata may use before it is killed (the import refused)."),
    Setting("Images", "ParseCPU", "image_parse_cpu", _int_parser(1, 86400),
            "CPU seconds that process may use before it is killed."),
    Setting("Images", "ParseTime", "image_parse_time", _int_parser(1, 86400),
            "Seconds that process may take, wall clock, before it is killed."),
)

ENTRY_KEYS = ("Title", "Kernel", "Initrd", "Append", "SysAppend", "Type")

_BY_KEY: dict[tuple[str, str], Setting] = {(s.section, s.key): s for s in SETTINGS}


def _parse_id(value: str) -> str:
    if not rules.ID_RE.match(value):
        raise ValueError(f"an id is {rules.ID_HINT}")
    return value


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class IniLine:
    path: Path
    line: int
    section: str
    key: str
    value: str


def parse_ini(path: Path, text: str) -> Iterator[IniLine]:
    """Yield the assignments of one file, in order; raise ConfigError on bad syntax."""
    section: str | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError("malformed section header", path=path, line=n)
            section = line[1:-1].strip()
            continue
        if "=" not in line:
            raise ConfigError(f"expected Key=Value, got {line[:40]!r}", path=path, line=n)
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if section is None:
            raise ConfigError("assignment outside of a section", path=path, line=n, key=key)
        yield IniLine(path, n, section, key, value)


def config_files(path: Path) -> list[Path]:
    """The main file (if it exists) followed by its drop-ins in lexical order."""
    files = [path] if path.exists() else []
    dropin = path.with_name(path.name + ".d")
    if dropin.is_dir():
        files += sorted(p for p in dropin.iterdir() if p.suffix == ".conf" and p.is_file())
    return files


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: Path | None = None, *, system_root: Path | None = Path("/")) -> Config:
    """Read pxed.conf and its drop-ins.  A missing main file gives the defaults (unconfigured).

    A firmware class whose loader pxed.conf does not name gets its preferred loader when that
    loader's files are installed under ``system_root`` (UEFI: GRUB, when the signed shim and GRUB
    are there), else the default (:func:`pxed.loaders.defaults`); ``None`` looks at nothing.
    """
    path = path or default_config_path()
    files = config_files(path)
    lines: list[IniLine] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError("not valid UTF-8", path=f) from None
        except OSError as e:
            raise ConfigError(f"cannot read: {e.strerror}", path=f) from None
        lines.extend(parse_ini(f, text))
    installed = None
    if system_root is not None:
        from pxed import boottree

        def installed(loader: loaders.Loader, fw: Firmware) -> bool:
            return boottree.available(loader.needed(frozenset({fw})), system_root=system_root)

    return build_config(lines, sources=tuple(files), installed=installed)


def build_config(lines: Iterable[IniLine], sources: tuple[Path, ...] = (),
                 installed: Callable[[loaders.Loader, Firmware], bool] | None = None) -> Config:
    values: dict[str, Any] = {}
    where: dict[str, IniLine] = {}
    entries: dict[str, dict[str, Any]] = {}
    entry_where: dict[str, IniLine] = {}
    for ln in lines:
        if ln.section.startswith("Entry ") or ln.section == "Entry":
            _entry_line(ln, entries, entry_where)
            continue
        setting = _BY_KEY.get((ln.section, ln.key))
        if setting is None:
            known = sorted({s.section for s in SETTINGS} | {"Entry ID"})
            if not any(s.section == ln.section for s in SETTINGS):
                raise ConfigError(f"unknown section [{ln.section}]", path=ln.path, line=ln.line,
                                  hint=f"sections are {', '.join('[' + k + ']' for k in known)}")
            keys = ", ".join(s.key for s in SETTINGS if s.section == ln.section)
            raise ConfigError(f"unknown key in [{ln.section}]", path=ln.path, line=ln.line, key=ln.key,
                              hint=f"known keys: {keys}")
        if ln.value == "":
            values.pop(setting.dest, None)
            continue
        if setting.dest == "menu.serial" and ln.value.lower() in ("no", "off", "false", "0"):
            values[setting.dest] = ""
            continue
        try:
            values[setting.dest] = setting.parse(ln.value)
            where[setting.dest] = ln
        except ValueError as e:
            raise ConfigError(str(e), path=ln.path, line=ln.line, key=ln.key) from None

    chosen = loaders.defaults(installed)
    files: dict[Firmware, str] = {}
    menu_kw: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for dest, v in values.items():
        head, _, tail = dest.partition(".")
        if head == "boot_files":
            files[Firmware(tail)] = v
        elif head == "loaders":
            chosen[Firmware(tail)] = v
        elif head == "menu":
            menu_kw[tail] = v
        else:
            top[head] = v
    boot_files: dict[Firmware, str] = {}
    for fw in Firmware:  # a boot file named in [Boot], else the loader's own
        if fw in chosen and fw not in loaders.get(chosen[fw]).firmware:
            ln = where[f"loaders.{fw.value}"]
            raise ConfigError(f"boot loader {chosen[fw]} cannot boot {fw} clients", path=ln.path, line=ln.line,
                              key=ln.key, hint="choose another loader, or leave the key empty for the default")
        if fw in files:
            boot_files[fw] = files[fw]
        elif fw in chosen:
            boot_files[fw] = loaders.get(chosen[fw]).boot_file(fw)
    built = [_make_entry(eid, kw, entry_where[eid]) for eid, kw in entries.items()]
    menu = MenuConfig(**menu_kw)
    return Config(
        **top,
        loaders=MappingProxyType(chosen),
        boot_files=MappingProxyType(boot_files),
        menu=menu,
        entries=tuple(built),
        sources=sources,
    )


def _entry_line(ln: IniLine, entries: dict[str, dict[str, Any]], where: dict[str, IniLine]) -> None:
    eid = ln.section[len("Entry"):].strip()
    try:
        rules.check_entry_id(eid)
    except ValueError as e:
        raise ConfigError(f"[{ln.section}]: {e}", path=ln.path, line=ln.line) from None
    if ln.key not in ENTRY_KEYS:
        raise ConfigError(f"unknown key in [{ln.section}]", path=ln.path, line=ln.line, key=ln.key,
                          hint=f"known keys: {', '.join(ENTRY_KEYS)}")
    kw = entries.setdefault(eid, {})
    where.setdefault(eid, ln)
    try:
        if ln.key == "Title":
            kw["title"] = rules.check_title(ln.value)
        elif ln.key == "Kernel":
            kw["kernel"] = parse_boot_file(ln.value)
        elif ln.key == "Initrd":
            if ln.value == "":
                kw["initrds"] = ()
            else:
                kw["initrds"] = kw.get("initrds", ()) + tuple(
                    parse_boot_file(p) for p in ln.value.replace(",", " ").split()
                )
        elif ln.key == "Append":
            kw["append"] = rules.check_cmdline(ln.value)
        elif ln.key == "SysAppend":
            kw["sysappend"] = _int_parser(0, 0xFFFF)(ln.value)
        elif ln.key == "Type":
            if ln.value not in ("linux", "memdisk"):
                raise ValueError("Type is linux or memdisk")
            kw["kind"] = ln.value
    except ValueError as e:
        raise ConfigError(str(e), path=ln.path, line=ln.line, key=ln.key) from None


def _make_entry(eid: str, kw: dict[str, Any], ln: IniLine) -> BootEntry:
    if "kernel" not in kw:
        raise ConfigError(f"[Entry {eid}] has no Kernel=", path=ln.path, line=ln.line,
                          hint="name the kernel relative to the boot root, e.g. Kernel=debian/linux")
    kw.setdefault("title", eid)
    return BootEntry(id=eid, **kw)
