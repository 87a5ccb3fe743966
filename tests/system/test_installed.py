"""The installed pxed under a real systemd (PID 1 in systemd-nspawn) on a lab network.

One container for the module (tests/lab/systemlab.py): a Debian 12 tree made by
debootstrap, pxed's .deb installed into it with apt-get (`make install` only as a developer
fallback when no current .deb exists), then what README.Debian tells the admin to do:
name the interface, `systemctl daemon-reload`, turn off Debian's own tftpd-hpa and lighttpd,
`systemctl enable --now pxed.socket`.  Each test checks one promise of the installed
package, from outside (the lab's client namespaces, a QEMU client) and inside (systemctl,
journalctl, busctl, pxectl, /proc, systemd-analyze).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, need, need_tool
from tests.images import isos
from tests.lab.bootlab import GRUB_MILESTONES, MILESTONES, NEXT_SERVER
from tests.lab.netns import can_run_lab, wait_for
from tests.lab.nspawn import built_deb, can_run_nspawn
from tests.lab.qemu import INITRD, KERNEL, OVMF_SB_CODE
from tests.lab.servers import world_readable_dir
from tests.lab.systemlab import BOOT_ROOT, WEB_IP, SystemLab

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.slow]
SERVER = "10.77.0.1"
SECRET = "pxed-systest-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def sl() -> Iterator[SystemLab]:
    for reason in (can_run_lab(), can_run_nspawn()):
        need(reason is None, reason or "")
    need_tool("dnsmasq", "radvd", "curl", "tftp", "make", "xorriso", "qemu-system-x86_64")
    need(KERNEL.exists() and INITRD.exists(), "Debian netboot kernel missing (debian-installer-12-netboot-amd64)")
    deb = built_deb()
    if IN_CI:  # the system test is about the package: `make check` builds it first
        assert deb is not None, "no current .deb: run make deb (make check and make test-system do)"
    d = world_readable_dir("pxedsys.")
    try:
        # the network's DHCP server names pxed as next-server: Debian 12's GRUB needs it (docs/uefi-secure-boot.md)
        with SystemLab(d, deb=deb, dhcp_extra=NEXT_SERVER) as lab:
            lab.start()
            yield lab
    finally:
        shutil.rmtree(d, ignore_errors=True)


def active(sl: SystemLab, unit: str) -> str:
    return sl.c.run(["systemctl", "is-active", unit], check=False).stdout.strip()


def pxed_replies(result: dict[str, object], key: str = "offers") -> list[dict[str, str]]:
    replies = result[key]
    assert isinstance(replies, list)
    return [o for o in replies if o.get("from", "").startswith(f"{SERVER}:") and o.get("vendor") == "PXEClient"]


def tftp(sl: SystemLab, *command: str) -> str:
    """tftp-hpa's client in the web namespace (it exits 0 even on errors: read its output)."""
    r = sl.fetch(["tftp", "-m", "binary", SERVER, "-c", *command], timeout=30)
    return (r.stdout + r.stderr).decode(errors="replace")


def http(sl: SystemLab, path: str) -> tuple[int, bytes]:
    r = sl.fetch(["curl", "-s", "--max-time", "10", "--path-as-is", "-o", "-", "-w", "\n%{http_code}",
                  f"http://{SERVER}/{path}"])
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


# ------------------------------------------------------------------ activation and the journal
def test_discover_starts_pxed_by_socket_activation_and_is_answered(sl: SystemLab) -> None:
    sl.c.run(["systemctl", "stop", "pxed.service"])
    assert active(sl, "pxed.socket") == "active"
    assert sl.c.run(["systemctl", "is-enabled", "pxed-pxe.socket"]).stdout.strip() == "enabled"  # Also=
    assert active(sl, "pxed.service") == "inactive"
    result = sl.discover("52:54:00:5e:00:10", wait=8)
    offers = pxed_replies(result)
    assert offers, (result, sl.c.journal("-u", "pxed", "-n", "50"))
    assert offers[0]["yiaddr"] == "0.0.0.0" and offers[0]["file"] == "lpxelinux.0"
    assert active(sl, "pxed.service") == "active"
    assert active(sl, "pxed-pxe.socket") == "active"  # pulled in by pxed.service (Requires=)


def test_a_clean_start_logs_no_warnings(sl: SystemLab) -> None:
    sl.c.run(["systemctl", "restart", "pxed.service"])
    invocation = sl.c.unit_property("pxed.service", "InvocationID")
    wait_for(lambda: "serving org.pxed.Pxed1" in sl.c.journal(f"_SYSTEMD_INVOCATION_ID={invocation}"), 20,
             what="pxed on the bus")
    assert sl.c.journal(f"_SYSTEMD_INVOCATION_ID={invocation}", "-p", "warning") == ""


def test_journal_shows_one_clients_exchange(sl: SystemLab) -> None:
    mac, other = "52:54:00:5e:00:20", "52:54:00:5e:00:21"
    result = sl.discover(mac, kind="efi64", wait=3, request_4011=True)
    assert pxed_replies(result) and pxed_replies(result, "acks"), result
    assert pxed_replies(sl.discover(other, wait=3))

    def entries() -> list[dict[str, str]]:
        out = sl.c.journal("-u", "pxed", f"CLIENT_MAC={mac}", "-o", "json")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    wait_for(lambda: {"offer", "ack"} <= {e.get("PXE_STAGE") for e in entries()}, 10, what="offer and ack logged")
    got = entries()
    assert {e["CLIENT_MAC"] for e in got} == {mac}  # the filter matched a structured field
    assert all(e["_SYSTEMD_UNIT"] == "pxed.service" for e in got)
    ack = next(e for e in got if e.get("PXE_STAGE") == "ack")
    # the package's Recommends bring the signed shim + GRUB: UEFI's default loader is GRUB then
    assert ack["BOOT_FILE"] == "shimx64.efi" and ack["CLIENT_ARCH"]


def test_bus_call_starts_stopped_pxed_by_bus_activation(sl: SystemLab) -> None:
    sl.c.run(["systemctl", "stop", "pxed.service"])
    assert active(sl, "pxed.service") == "inactive"
    r = sl.c.run(["busctl", "--json=short", "call", "org.pxed.Pxed1", "/org/pxed/Pxed1", "org.pxed.Pxed1.Manager",
                  "GetStatus"])
    (status,) = json.loads(r.stdout)["data"]
    assert status["State"]["data"] == "running" and status["Interface"]["data"] == "lab0"
    assert status["Address"]["data"] == SERVER
    assert active(sl, "pxed.service") == "active"
    assert "org.pxed.Pxed1" in sl.c.journal("-u", "dbus", "-g", "org.pxed.Pxed1")  # dbus-daemon activated it


# ------------------------------------------------------------------ images and authorization
def test_pxectl_add_imports_an_iso_under_the_units_sandbox(sl: SystemLab, tmp_path: Path) -> None:
    iso, contents = isos.build("generic", tmp_path)
    shutil.copyfile(iso, sl.c.path("/root/generic.iso"))
    r = sl.c.run(["pxectl", "add", "/root/generic.iso", "--name", "fixture"], check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    listing = sl.c.run(["pxectl", "--json", "list"]).stdout
    assert "fixture" in listing
    kernel = sl.c.path(f"{BOOT_ROOT}/images/fixture/boot/vmlinuz")
    assert kernel.read_bytes() == contents["boot/vmlinuz"]
    assert sl.c.run(["stat", "-c", "%U", f"{BOOT_ROOT}/images/fixture"]).stdout.strip() == "pxed"
    menu = sl.c.path(f"{BOOT_ROOT}/pxelinux.cfg/pxe.cfg").read_text()
    assert "LABEL fixture\n" in menu
    code, body = http(sl, "images/fixture/boot/vmlinuz")  # served at once by pxed-http
    assert code == 200 and body == contents["boot/vmlinuz"]


def test_unprivileged_users_are_denied_and_pxed_admin_is_allowed(sl: SystemLab) -> None:
    c = sl.c
    c.run(["useradd", "--system", "--no-create-home", "--groups", "pxed-admin", "pxedsys-admin"], check=False)
    c.run(["useradd", "--system", "--no-create-home", "pxedsys-user"], check=False)
    assert c.run(["pxectl", "list"], user="nobody").returncode == 0  # reading is for everyone
    for user in ("nobody", "pxedsys-user"):
        r = c.run(["pxectl", "--no-ask-password", "remove", "no-such-image"], user=user, check=False)
        assert r.returncode == 77 and "not authorized" in r.stderr, (user, r.stderr)
    # The same call from a pxed-admin member passes polkit and reaches the catalog: so the
    # denial above was polkit's answer about the user, not a failed check.
    r = c.run(["pxectl", "--no-ask-password", "remove", "no-such-image"], user="pxedsys-admin", check=False)
    assert r.returncode == 66 and "no image named" in r.stderr, r.stderr


# ------------------------------------------------------------------ the generated servers
@pytest.fixture(scope="module")
def served(sl: SystemLab) -> SystemLab:
    """pxed running (so are its generated servers), a secret outside the boot root and
    traps inside it: a symlink to /etc, and a world-writable file."""
    sl.c.run(["systemctl", "start", "pxed.service"])
    sl.c.path(f"/etc/{SECRET}").write_text(SECRET)
    boot = sl.c.path(BOOT_ROOT)
    (boot / "escape").symlink_to("/etc")
    (boot / "ww.txt").write_text("world-writable\n")
    (boot / "ww.txt").chmod(0o666)
    wait_for(lambda: active(sl, "pxed-tftp") == active(sl, "pxed-http") == "active", 20, what="servers active")
    return sl


def test_generated_units_run_and_serve_the_boot_root(served: SystemLab) -> None:
    sl = served
    for unit in ("pxed-tftp.service", "pxed-http.service"):
        assert sl.c.unit_property(unit, "FragmentPath") == f"/run/systemd/generator/{unit}"
        assert active(sl, unit) == "active", sl.c.journal("-u", unit, "-n", "20")
    assert active(sl, "tftpd-hpa") != "active" and active(sl, "lighttpd") != "active"
    out = sl.workdir / "lpxelinux.0"
    assert "Error" not in tftp(sl, "get", "lpxelinux.0", str(out))
    assert out.read_bytes() == sl.c.path(f"{BOOT_ROOT}/lpxelinux.0").read_bytes()
    code, body = http(sl, "pxelinux.cfg/default")
    assert code == 200 and body == sl.c.path(f"{BOOT_ROOT}/pxelinux.cfg/default").read_bytes()
    assert f"RRQ from {WEB_IP} filename lpxelinux.0" in sl.c.journal("-u", "pxed-tftp")


def test_tftp_writes_are_refused(served: SystemLab) -> None:
    sl = served
    src = sl.workdir / "upload.txt"
    src.write_text("OVERWRITTEN\n")
    for target in ("new.txt", "ww.txt"):
        assert "Error code" in tftp(sl, "put", str(src), target), target
    assert not sl.c.path(f"{BOOT_ROOT}/new.txt").exists()
    assert sl.c.path(f"{BOOT_ROOT}/ww.txt").read_text() == "world-writable\n"  # read-only even when o+w


@pytest.mark.parametrize("path", [f"escape/{SECRET}", f"../../../../etc/{SECRET}", f"/etc/{SECRET}",
                                  f"%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/{SECRET}", "escape/passwd"])
def test_paths_outside_the_root_are_refused_over_tftp_and_http(served: SystemLab, path: str) -> None:
    sl = served
    out = sl.workdir / "escape.out"
    out.unlink(missing_ok=True)
    said = tftp(sl, "get", path, str(out))
    got = out.read_bytes() if out.exists() else b""
    assert "Error code" in said and SECRET.encode() not in got and b"root:" not in got, said
    code, body = http(sl, path.lstrip("/"))
    assert code in (400, 403, 404) and SECRET.encode() not in body and b"root:" not in body, code


# ------------------------------------------------------------------ privileges and exposure
def test_running_pxed_has_no_capabilities(sl: SystemLab) -> None:
    sl.c.run(["systemctl", "start", "pxed.service"])
    pid = sl.c.unit_property("pxed.service", "MainPID")
    status = sl.c.run(["cat", f"/proc/{pid}/status"]).stdout
    caps = dict(re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M))
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0 and int(caps["CapBnd"], 16) == 0, caps
    assert re.search(r"^Uid:\s+(\d+)", status, re.M).group(1) != "0"  # type: ignore[union-attr]


@pytest.mark.parametrize(("unit", "limit"), [("pxed.service", 1.0), ("pxed-tftp.service", 2.0),
                                             ("pxed-http.service", 2.0)])
def test_systemd_analyze_security_exposure(sl: SystemLab, unit: str, limit: float) -> None:
    r = sl.c.run(["systemd-analyze", "security", "--no-pager", unit], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= limit, r.stdout


# ------------------------------------------------------------------ the whole point
@pytest.mark.qemu
@pytest.mark.parametrize("firmware", ["bios", "uefi-sb"])
def test_qemu_client_boots_through_the_installed_package(sl: SystemLab, firmware: str) -> None:
    """BIOS through syslinux; UEFI with Secure Boot enforced through the signed shim + GRUB the
    package recommends (the default loader where they are installed)."""
    if firmware == "uefi-sb":
        need(OVMF_SB_CODE.exists(), "OVMF's Secure Boot build is not installed (ovmf)")
    mac = "52:54:00:5e:01:01" if firmware == "bios" else "52:54:00:5e:01:02"
    vm = sl.boot(firmware, mac=mac)
    try:
        for name, pattern in MILESTONES if firmware == "bios" else GRUB_MILESTONES:
            vm.wait(pattern, 240, name)
    except TimeoutError as e:
        servers = sl.c.journal("-u", "pxed-http", "-u", "pxed-tftp", "-n", "40")
        raise AssertionError(f"{e}\n--- pxed-http/pxed-tftp journal:\n{servers}") from None
    text = vm.text()
    image = f"http://{SERVER}/debian/linux" if firmware == "bios" else f"(tftp,{SERVER})/debian/linux"
    assert f"Command line: BOOT_IMAGE={image} console=ttyS0,115200" in text, text[-3000:]
    if firmware == "uefi-sb":
        vm.wait("Secure boot enabled", 60, "kernel sees Secure Boot")
    vm.stop()
    stages = [json.loads(line).get("PXE_STAGE") for line in
              sl.c.journal("-u", "pxed", f"CLIENT_MAC={mac}", "-o", "json").splitlines() if line.strip()]
    assert "offer" in stages, (stages, sl.c.journal("-u", "pxed", "-n", "40"))
    boot_file = "pxelinux.0" if firmware == "bios" else "shimx64.efi"  # the BIOS VM's NIC ROM is iPXE
    tftp_log = sl.c.journal("-u", "pxed-tftp")
    fetched_by = set(re.findall(rf"RRQ from (10\.77\.0\.\d+) filename /?{re.escape(boot_file)}$", tftp_log, re.M))
    assert fetched_by - {WEB_IP}, tftp_log[-3000:]  # the VM's lease address, not the test's own fetch


# ------------------------------------------------------------------ last: reboot, shutdown
def test_enabled_pxed_answers_after_a_reboot(sl: SystemLab) -> None:
    """Enabled means: after a reboot the generator runs at boot, pxed.socket listens on the
    interface again (BindToDevice from the generated drop-in) and the first DISCOVER starts pxed."""
    sl.c.reboot()
    assert active(sl, "pxed.socket") == "active" and active(sl, "pxed.service") == "inactive"
    assert sl.c.unit_property("pxed.socket", "BindToDevice") == "lab0"
    offers = pxed_replies(sl.discover("52:54:00:5e:00:30", wait=8))
    assert offers and offers[0]["file"] == "lpxelinux.0"
    wait_for(lambda: active(sl, "pxed-tftp") == active(sl, "pxed-http") == "active", 20, what="servers active")
    assert sl.c.unit_property("pxed-tftp.service", "FragmentPath").startswith("/run/systemd/generator/")


# ------------------------------------------------------------------ shutting down
def test_pxed_does_not_hold_up_system_shutdown(sl: SystemLab) -> None:
    """At poweroff dbus-daemon stops alongside pxed; pxed once waited for a bus reply that
    never came until systemd killed it after TimeoutStopSec (90 s)."""
    sl.c.run(["busctl", "call", "org.pxed.Pxed1", "/org/pxed/Pxed1", "org.pxed.Pxed1.Manager", "GetStatus"])
    assert active(sl, "pxed.service") == "active"
    took = sl.c.poweroff(timeout=150)
    assert took is not None and took < 20, (took, sl.c.console.read_text(errors="replace")[-3000:])
