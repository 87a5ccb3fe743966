"""Static units and the generator's output: systemd-analyze verify (silent) and security scores."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pxed.config import load_config
from pxed.units import ToolPaths, blocksize, render_units
from tests.conftest import REPO, need_tool

UNITS = REPO / "units"


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def exposure(unit: str, cwd: Path) -> float:
    r = analyze("security", "--offline=true", unit, cwd=cwd)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def generate(tmp_path: Path, conf_text: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    conf = tmp_path / "pxed.conf"
    conf.write_text(conf_text)
    out = tmp_path / "gen"
    out.mkdir()
    r = subprocess.run([sys.executable, "-m", "pxed.generator", str(out), str(tmp_path / "e"), str(tmp_path / "l")],
                       env={**os.environ, "PXED_CONFIG": str(conf), "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True)
    return out, r


@pytest.fixture
def static_units(tmp_path: Path) -> Path:
    d = tmp_path / "static"
    shutil.copytree(UNITS, d)
    svc = d / "pxed.service"  # /usr/bin/pxed is not installed on a test machine: point at python
    svc.write_text(svc.read_text().replace("ExecStart=/usr/bin/pxed", f"ExecStart={sys.executable} -m pxed"))
    return d


def test_static_units_verify_silently(static_units: Path) -> None:
    need_tool("systemd-analyze")
    r = analyze("verify", "--man=no", "pxed.socket", "pxed-pxe.socket", "pxed.service", cwd=static_units)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_pxed_service_exposure_at_most_1(static_units: Path) -> None:
    need_tool("systemd-analyze")
    assert exposure("pxed.service", static_units) <= 1.0
    r = analyze("security", "--offline=true", "--threshold=10", "pxed.service", cwd=static_units)
    assert r.returncode == 0


def test_sockets_pass_named_fds_with_packet_info() -> None:
    dhcp, pxe = (UNITS / "pxed.socket").read_text(), (UNITS / "pxed-pxe.socket").read_text()
    for text, port, name in ((dhcp, 67, "dhcp"), (pxe, 4011, "pxe")):
        assert f"ListenDatagram=0.0.0.0:{port}\n" in text and f"FileDescriptorName={name}\n" in text
        assert "PassPacketInfo=yes" in text and "Broadcast=yes" in text and "ReceiveBuffer=4M" in text
    assert "Also=pxed-pxe.socket" in dhcp


def test_generator_writes_nothing_when_unconfigured(tmp_path: Path) -> None:
    out, r = generate(tmp_path, "# nothing\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "") and list(out.iterdir()) == []


def test_generator_reports_bad_config_and_writes_nothing(tmp_path: Path) -> None:
    out, r = generate(tmp_path, "[Network]\nInterface=eth0\nBogus=1\n")
    assert r.returncode == 0 and "pxed.conf:3: Bogus: unknown key" in r.stderr and list(out.iterdir()) == []


def test_generated_units_verify_and_score(tmp_path: Path) -> None:
    need_tool("systemd-analyze", "in.tftpd", "lighttpd")
    out, r = generate(tmp_path, "[Network]\nInterface=eth0\n[HTTP]\nBackend=lighttpd\nPort=8080\n"
                                 "[Paths]\nBootRoot=/srv/pxed\n")
    assert (r.returncode, r.stderr) == (0, "")
    assert (out / "pxed.socket.d/50-interface.conf").read_text().endswith("[Socket]\nBindToDevice=eth0\n")
    assert (out / "pxed-pxe.socket.d/50-interface.conf").exists()
    assert os.readlink(out / "pxed.service.wants/pxed-tftp.service") == "../pxed-tftp.service"
    tftp = (out / "pxed-tftp.service").read_text()
    (exec_start,) = [ln for ln in tftp.splitlines() if ln.startswith("ExecStart=")]
    assert "--secure" in exec_start and " -c" not in exec_start and "--create" not in exec_start
    assert "ReadOnlyPaths=/srv/pxed" in tftp
    assert "User=pxed-tftp" in tftp and "RestrictNetworkInterfaces=eth0" in tftp
    assert "Conflicts=tftpd-hpa.service " in tftp  # Debian starts its own in.tftpd on port 69
    conf = (out / "pxed-http.conf").read_text()
    assert 'server.document-root = "/srv/pxed"' in conf and 'follow-symlink = "disable"' in conf
    assert "server.port = 8080" in conf
    r = analyze("verify", "--man=no", "pxed-tftp.service", "pxed-http.service", cwd=out)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    for unit in ("pxed-tftp.service", "pxed-http.service"):
        assert exposure(unit, out) <= 2.0, unit
    r = subprocess.run(["lighttpd", "-tt", "-f", str(out / "pxed-http.conf")], capture_output=True, text=True)
    assert "WARNING" not in r.stderr


def test_darkhttpd_unit_when_installed(tmp_path: Path) -> None:
    if shutil.which("darkhttpd") is None:
        pytest.skip("darkhttpd is not on PATH (not packaged in Debian); lighttpd is tested instead")
    out, r = generate(tmp_path, "[Network]\nInterface=eth0\n[HTTP]\nBackend=darkhttpd\n")
    unit = (out / "pxed-http.service").read_text()
    assert "--chroot" in unit and "--no-listing" in unit and not (out / "pxed-http.conf").exists()
    r2 = analyze("verify", "--man=no", "pxed-http.service", cwd=out)
    assert (r2.returncode, r2.stderr) == (0, "")
    assert exposure("pxed-http.service", out) <= 2.0


def test_blocksize_clamped_below_mtu(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("[Network]\nInterface=eth0\n")
    c = load_config(conf)
    assert blocksize(c, 1500) == 1468 and blocksize(c, 9000) == 8968
    conf.write_text("[Network]\nInterface=eth0\n[TFTP]\nBlockSize=1024\n")
    assert blocksize(load_config(conf), 1500) == 1024
    files = render_units(load_config(conf), mtu=1500, paths=ToolPaths(), output_dir=tmp_path)
    assert "--blocksize 1024" in files["pxed-tftp.service"]
