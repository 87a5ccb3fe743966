"""pxed.rules: each domain rule once, and the loader keys of [Boot] that choose the backends."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pxed import loaders, rules
from pxed.config import load_config
from pxed.errors import ConfigError
from pxed.model import Firmware


def test_ids_titles_and_command_lines() -> None:
    assert rules.check_id("arch_2026.11-x") == "arch_2026.11-x"
    for bad in ("", "Arch", "-x", "a/b", "a" * 64, "x\n"):
        with pytest.raises(ValueError, match="invalid id"):
            rules.check_id(bad)
    for reserved in rules.RESERVED_IDS:
        with pytest.raises(ValueError, match="reserved"):
            rules.check_entry_id(reserved)
    assert set(rules.TOOL_IDS) | set(rules.LOADER_LABELS) == rules.RESERVED_IDS
    for bad_title in ("two\nlines", "", " ", "x" * 61, "{{ x }}", "\u200b"):
        with pytest.raises(ValueError):
            rules.check_title(bad_title)
    assert rules.check_cmdline("a" * rules.MAX_CMDLINE)
    for bad_cmdline in ("a" * (rules.MAX_CMDLINE + 1), "quiet\ninit=/bin/sh"):
        with pytest.raises(ValueError):
            rules.check_cmdline(bad_cmdline)


def test_boot_paths_are_an_allow_list_and_loader_params_are_known() -> None:
    for ok in ("images/arch/arch/boot/x86_64/vmlinuz-linux", "memtest/memtest86+.bin", "a/.disk/x~1@2", "k"):
        assert rules.check_boot_path(ok) == ok
    for bad in ("", "/abs", "a//b", "a/./b", "a/../b", "..", "boot/%2e%2e/k", "initrd.gz,EXTRA.img", "k k",
                "k\nAPPEND x", "k'", 'k"', "k$x", "k;x", "k:x", "k\\x", "\u00e9", "k?x", "k#x", "a" * 1025):
        with pytest.raises(ValueError, match="unsafe path"):
            rules.check_boot_path(bad)
    for word in ("initrd=/x", "INITRD=/x", "BOOT_IMAGE=/vmlinuz", "BOOTIF=01-52-54", "SYSUUID=x", "initrdefi=x"):
        assert rules.is_loader_param(word), word
    for word in ("quiet", "initrd", "root=live:CDLABEL=X", "ip=dhcp", "vga=791"):
        assert not rules.is_loader_param(word), word


def test_one_base_url_and_one_placeholder_expander() -> None:
    ip = ipaddress.IPv4Address("10.77.0.1")
    assert rules.base_host(ip, 80) == "10.77.0.1" and rules.base_host(ip, 8080) == "10.77.0.1:8080"
    assert rules.http_url("10.77.0.1:8080", "/images/a") == "http://10.77.0.1:8080/images/a"
    # one pass: a value is never expanded again, unknown and missing placeholders stay
    assert rules.expand("{server}/{base}/{iso} {x}", {"server": "{base}", "base": "images/a"}) == \
        "{base}/images/a/{iso} {x}"


def test_loaders_are_chosen_per_firmware_class_in_boot(tmp_path: Path) -> None:
    conf = tmp_path / "pxed.conf"
    c = load_config(tmp_path / "none.conf", system_root=None)  # the defaults, whatever is installed
    assert dict(c.loaders) == dict(loaders.DEFAULT_LOADERS)
    assert c.boot_files[Firmware.BIOS] == "lpxelinux.0" and Firmware.ARM64 not in c.boot_files
    conf.write_text("[Boot]\nBIOS=custom/pxe.0\n")
    assert load_config(conf).boot_files[Firmware.BIOS] == "custom/pxe.0"  # a named file wins
    conf.write_text("[Boot]\nEFI64Loader=grub9\n")
    with pytest.raises(ConfigError, match="unknown boot loader"):
        load_config(conf)
    conf.write_text("[Boot]\nARM64Loader=syslinux\n")
    with pytest.raises(ConfigError, match="cannot boot arm64") as e:
        load_config(conf)
    assert "line 2" in str(e.value) or ":2" in str(e.value)


def test_every_loader_keeps_to_its_interface() -> None:
    for name, loader in loaders.LOADERS.items():
        assert loader.name == name and loader.firmware
        for fw in loader.firmware:
            path = loader.boot_file(fw)
            assert path and not path.startswith("/")
            assert all(isinstance(code, int) and isinstance(v, bytes) for code, v in loader.dhcp_options(path))
        assert all(n.packages and n.candidates for n in loader.needed(loader.firmware))
