"""pxed's command line: configuration errors and inspection, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def pxed(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pxed", "--log-target", "stderr", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)


def test_bad_config_names_file_line_and_key_and_exits_78(tmp_path: Path) -> None:
    conf = tmp_path / "pxed.conf"
    conf.write_text("[Network]\nInterface=lab0\n")
    (tmp_path / "pxed.conf.d").mkdir()
    (tmp_path / "pxed.conf.d" / "50-bad.conf").write_text("# comment\n[HTTP]\nPort=eighty\n")
    r = pxed("--config", str(conf))
    assert r.returncode == 78
    assert f"{tmp_path}/pxed.conf.d/50-bad.conf:3: Port: expected a whole number" in r.stderr


def test_unconfigured_says_what_to_do(tmp_path: Path) -> None:
    r = pxed("--config", str(tmp_path / "missing.conf"))
    assert r.returncode == 78
    assert "set [Network] Interface=" in r.stderr


def test_check_and_dump_config(tmp_path: Path) -> None:
    conf = tmp_path / "pxed.conf"
    conf.write_text("[Network]\nInterface=eth7\n[Boot]\nEFI32=efi32/syslinux.efi\n")
    r = pxed("--config", str(conf), "--check-config")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "eth7" in r.stdout
    r = pxed("--config", str(conf), "--dump-config", "--json")
    data = json.loads(r.stdout)
    assert data["interface"] == "eth7"
    assert data["boot_files"]["efi32"] == "efi32/syslinux.efi"


def test_help_teaches() -> None:
    r = pxed("--help")
    assert r.returncode == 0
    assert "--check-config" in r.stdout and "Examples:" in r.stdout and "pxed.conf(5)" in r.stdout
