"""The distro packages (Debian, Arch, Fedora), each checked against what `make install` installs.

The .deb is built once per session (about 10 s) and then inspected: its files must be exactly
what `make install` installs (one list of what an installation contains), lintian must find no
error or warning, its Python package must run from Debian's path layout, and its maintainer
scripts, run against a scratch root with the real systemd-sysusers, systemd-tmpfiles and
deb-systemd-helper, must create the users and the boot root but enable nothing.

The PKGBUILD's build() and package() run here as makepkg runs them. The RPM spec is expanded by
rpmspec and linted by rpmlint, and its %files must cover exactly what `make install` installs
with Fedora's directories; it is not built here, since Fedora's pyproject and systemd macros are
not packaged for Debian.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest

import pxed
from tests.conftest import REPO, need, need_tool

pytestmark = pytest.mark.slow

DEB_DEPENDS = ("pxelinux", "python3-dbus-fast", "python3-jinja2", "python3-pycdlib", "python3-pyroute2",
               "python3-systemd", "syslinux-common", "syslinux-efi", "tftpd-hpa", "lighttpd | darkhttpd")
SITE = re.compile(r"^usr/lib/python3[.0-9]*/(site|dist)-packages/")


@dataclass(frozen=True)
class Deb:
    path: Path
    changes: Path
    root: Path  # the package's files (dpkg-deb -x)
    control: Path  # its control area (dpkg-deb -e)


def tree(root: Path) -> set[str]:
    """Files, symlinks and empty directories under root, with the differences that are the
    distro's business taken out: the Python site directory's name, .dist-info, bytecode,
    compressed man pages and /usr/share/doc."""
    found: set[str] = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            if any(path.iterdir()):
                continue
            rel += "/"
        rel = SITE.sub("PYTHON/", rel)
        if "__pycache__" in rel or ".dist-info/" in rel or rel.startswith(("usr/share/doc/", "DEBIAN")):
            continue
        if rel.startswith("usr/share/man/"):
            rel = rel.removesuffix(".gz")
        found.add(rel)
    return found


def pkg_config(variable: str, fallback: str) -> str:
    r = subprocess.run(["pkg-config", "--define-variable=prefix=/usr", f"--variable={variable}", "systemd"],
                       capture_output=True, text=True)
    return r.stdout.strip() or fallback


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Deb:
    need_tool("make", "pkg-config", "dpkg-buildpackage", "dh_python3", "dpkg-deb")
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run(["make", "-s", "deb", f"DEB_BUILD={out / 'build'}", f"DEB={out / 'pxed.deb'}",
                        f"TARBALL={out / 'pxed.tar.gz'}"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert not (REPO / "debian").exists(), "make deb must not leave a debian/ directory in the repository"
    subprocess.run(["dpkg-deb", "-x", out / "pxed.deb", out / "root"], check=True)
    subprocess.run(["dpkg-deb", "-e", out / "pxed.deb", out / "control"], check=True)
    (changes,) = (out / "build").glob(f"pxed_{pxed.__version__}_*.changes")
    return Deb(out / "pxed.deb", changes, out / "root", out / "control")


@pytest.fixture(scope="session")
def make_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tool("make", "pkg-config")
    dest = tmp_path_factory.mktemp("install") / "root"
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return dest


def control_field(deb: Deb, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", deb.path, field], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_deb_holds_exactly_what_make_install_installs(deb: Deb, make_installed: Path) -> None:
    in_deb, installed = tree(deb.root), tree(make_installed)
    assert in_deb == installed, f"only in the .deb: {sorted(in_deb - installed)}; " \
                                f"only from make install: {sorted(installed - in_deb)}"


def test_deb_layout_and_metadata(deb: Deb) -> None:
    unitdir = pkg_config("systemdsystemunitdir", "/lib/systemd/system").lstrip("/")
    gendir = pkg_config("systemdsystemgeneratordir", "/lib/systemd/system-generators").lstrip("/")
    root = deb.root
    for unit in ("pxed.socket", "pxed-pxe.socket", "pxed.service"):
        assert (root / unitdir / unit).is_file(), unit
    assert "ExecStart=/usr/bin/pxed\n" in (root / unitdir / "pxed.service").read_text()
    generator = root / gendir / "pxed-generator"
    assert generator.is_symlink() and (root / os.readlink(generator).lstrip("/")).is_file()
    for name in ("dbus-1/system.d/org.pxed.Pxed1.conf", "dbus-1/system-services/org.pxed.Pxed1.service",
                 "dbus-1/interfaces/org.pxed.Pxed1.Manager.xml", "dbus-1/interfaces/org.pxed.Pxed1.Job.xml",
                 "polkit-1/actions/org.pxed.Pxed1.policy", "polkit-1/rules.d/50-pxed.rules",
                 "man/man1/pxectl.1.gz", "man/man5/pxed.conf.5.gz", "man/man8/pxed.8.gz",
                 "man/man8/pxed-generator.8.gz", "bash-completion/completions/pxectl", "doc/pxed/README.Debian"):
        assert (root / "usr/share" / name).exists(), name
    for kind in ("sysusers.d", "tmpfiles.d"):
        shipped = (REPO / "packaging" / kind / "pxed.conf").read_bytes()
        assert (root / "usr/lib" / kind / "pxed.conf").read_bytes() == shipped, kind
    assert (deb.control / "conffiles").read_text().split() == ["/etc/pxed/pxed.conf"]
    assert control_field(deb, "Version") == pxed.__version__
    assert control_field(deb, "Architecture") == "all"
    depends = [d.strip() for d in control_field(deb, "Depends").split(",")]
    for dep in DEB_DEPENDS:
        assert dep in depends, dep
    assert any(d.startswith("python3:any (>= 3.11") for d in depends)
    assert any(d.startswith("systemd") and "sysusers" in d for d in depends)  # dh_installsysusers's


def test_deb_python_package_runs_from_debian_path_layout(deb: Deb, tmp_path: Path) -> None:
    """Every module imports, and the scripts run, with the interpreter their #! names (Debian's
    python3) and Debian 12's own libraries (python3-dbus-fast, ... from tools/install-deps)."""
    site = deb.root / "usr/lib/python3/dist-packages"
    shebangs = {(deb.root / "usr/bin" / s).read_text().splitlines()[0] for s in ("pxed", "pxectl", "pxed-generator")}
    assert shebangs == {"#!/usr/bin/python3"}
    python = "/usr/bin/python3"
    need_tool(python)
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([python, "-c", "import importlib, importlib.resources, pkgutil, pxed\n"
                        "for m in pkgutil.walk_packages(pxed.__path__, 'pxed.'): importlib.import_module(m.name)\n"
                        "print(pxed.__file__)\n"
                        "print((importlib.resources.files('pxed') / 'templates/syslinux/pxe.cfg.j2').is_file())"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(site / "pxed/__init__.py"), "True"]
    for script in ("pxed", "pxectl"):
        r = subprocess.run([python, deb.root / "usr/bin" / script, "--version"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0 and pxed.__version__ in r.stdout + r.stderr, (script, r.stdout, r.stderr)


def test_lintian_finds_no_errors_or_warnings(deb: Deb) -> None:
    need_tool("lintian")
    r = subprocess.run(["lintian", "--pedantic", "--display-info", deb.changes], capture_output=True, text=True)
    tags = [ln for ln in r.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    print(r.stdout)  # pedantic (P:) and info (I:) tags are shown with -rA, not failed on
    assert not tags, "\n".join(tags)
    assert r.returncode == 0, r.stdout + r.stderr


def test_deb_postinst_creates_users_and_boot_root_but_enables_nothing(deb: Deb, tmp_path: Path) -> None:
    """The real postinst against a scratch root (DPKG_ROOT): systemd-sysusers, systemd-tmpfiles and
    deb-systemd-helper run for real there; only what would touch the running host (systemctl,
    deb-systemd-invoke, py3compile of the host's Python) is replaced by a recorder."""
    need(os.geteuid() == 0, "needs root (systemd-tmpfiles chowns the boot root)")
    need_tool("systemd-sysusers", "systemd-tmpfiles", "deb-systemd-helper")
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", f"{deb.root}/.", root], check=True)
    stubs, log = tmp_path / "stubs", tmp_path / "calls"
    stubs.mkdir()
    for tool in ("systemctl", "deb-systemd-invoke", "py3compile", "pypy3compile"):
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
        (stubs / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "DPKG_ROOT": str(root),
           "DPKG_MAINTSCRIPT_PACKAGE": "pxed", "DPKG_MAINTSCRIPT_NAME": "postinst"}
    r = subprocess.run(["sh", "-e", deb.control / "postinst", "configure"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    users = {ln.split(":")[0]: ln.split(":") for ln in (root / "etc/passwd").read_text().splitlines()}
    groups = {ln.split(":")[0] for ln in (root / "etc/group").read_text().splitlines()}
    assert {"pxed", "pxed-tftp", "pxed-http"} <= users.keys() and "pxed-admin" in groups
    boot = (root / "var/lib/pxed/boot").stat()
    assert (boot.st_uid, boot.st_mode & 0o7777) == (int(users["pxed"][2]), 0o755)
    assert not (root / "etc/systemd/system/sockets.target.wants").exists(), "a fresh install enabled pxed"
    calls = log.read_text().splitlines() if log.exists() else []
    assert not [c for c in calls if c.split()[:2] in (["systemctl", "enable"], ["systemctl", "start"])], calls


# --- Arch: the PKGBUILD, sourced and run by bash as makepkg would ---------------------------------

ARCH_DEPENDS = {"python", "python-dbus-fast", "python-systemd", "python-pyroute2", "python-jinja", "python-pycdlib",
                "tftp-hpa", "syslinux", "darkhttpd"}
PKGBUILD = REPO / "packaging/arch/PKGBUILD"


def pkgbuild_vars() -> dict[str, list[str]]:
    script = ('set -e; source "$1"; for v in pkgname pkgver arch depends makedepends backup install source; do '
              'eval "vals=(\\"\\${$v[@]}\\")"; printf "%s" "$v"; printf "\\t%s" "${vals[@]}"; printf "\\n"; done')
    r = subprocess.run(["bash", "-c", script, "bash", PKGBUILD], capture_output=True, text=True, check=True)
    return {name: values for name, *values in (ln.split("\t") for ln in r.stdout.splitlines())}


def test_pkgbuild_metadata() -> None:
    v = pkgbuild_vars()
    assert v["pkgname"] == ["pxed"] and v["pkgver"] == [pxed.__version__] and v["arch"] == ["any"]
    assert set(v["depends"]) == ARCH_DEPENDS
    assert {"python-build", "python-installer", "python-wheel", "python-setuptools"} <= set(v["makedepends"])
    assert v["backup"] == ["etc/pxed/pxed.conf"]
    assert v["source"] == [f"pxed-{pxed.__version__}.tar.gz"]
    install = PKGBUILD.parent / v["install"][0]
    subprocess.run(["bash", "-n", install], check=True)
    body = [ln.strip() for ln in install.read_text().splitlines() if not re.fullmatch(r"\w+\(\) \{|\}", ln)]
    assert all(ln.startswith("echo ") for ln in body), body  # it tells the admin; it enables and starts nothing


def test_pkgbuild_build_and_package_install_what_make_install_installs(make_installed: Path, tmp_path: Path) -> None:
    """build() and package() run as makepkg runs them (srcdir with the `make dist` tarball unpacked,
    pkgdir empty); `python` is Arch's name for python3."""
    need_tool("make", "tar")
    src, pkg, shims = tmp_path / "src", tmp_path / "pkg", tmp_path / "bin"
    for d in (src, pkg, shims):
        d.mkdir()
    tarball = tmp_path / f"pxed-{pxed.__version__}.tar.gz"
    subprocess.run(["make", "-s", "dist", f"TARBALL={tarball}"], cwd=REPO, check=True)
    subprocess.run(["tar", "-xzf", tarball, "-C", src], check=True)
    (shims / "python").symlink_to(sys.executable)
    script = 'set -e; source "$1"; cd "$srcdir"; build; cd "$srcdir"; package'
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "srcdir": str(src), "pkgdir": str(pkg)}
    r = subprocess.run(["bash", "-c", script, "bash", PKGBUILD], env=env, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    in_pkg, installed = tree(pkg), tree(make_installed)
    assert in_pkg == installed, f"only in the package: {sorted(in_pkg - installed)}; " \
                                f"only from make install: {sorted(installed - in_pkg)}"


# --- Fedora: the spec, expanded by rpmspec; its %files against make install with Fedora's dirs ----

SPEC = REPO / "packaging/rpm/pxed.spec"
# Defined on Fedora by systemd-rpm-macros and redhat-rpm-config, which Debian's rpm lacks.
FEDORA_DIRS = {"_unitdir": "/usr/lib/systemd/system", "_systemdgeneratordir": "/usr/lib/systemd/system-generators",
               "_sysusersdir": "/usr/lib/sysusers.d", "_tmpfilesdir": "/usr/lib/tmpfiles.d",
               "bash_completions_dir": "/usr/share/bash-completion/completions"}
RPMLINT_ACCEPTED = ("no-buildroot-tag",  # Fedora's rpmbuild sets the build root itself
                    "invalid-url Source0")  # built from `make dist`: no release URL yet


def rpmspec(*args: str) -> str:
    defines = [a for k, v in FEDORA_DIRS.items() for a in ("--define", f"{k} {v}")]
    r = subprocess.run(["rpmspec", *defines, *args, SPEC], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def spec_files() -> tuple[list[str], list[str]]:
    """(%files patterns, %dir entries) of the expanded spec; %doc and the -f list are the distro's."""
    text = rpmspec("-P")
    body = text[text.index("\n%files"):text.index("\n%changelog")].splitlines()[2:]
    patterns, dirs = [], []
    for line in filter(None, (ln.strip() for ln in body)):
        words = line.split()
        if words[0] == "%doc":
            continue
        if words[0] == "%dir":
            dirs.append(words[1].lstrip("/"))
        else:
            assert words[0].startswith("/") or words[0].startswith("%config"), line
            patterns.append(words[-1].lstrip("/"))
    return patterns, dirs


def test_spec_metadata_and_rpmlint() -> None:
    need_tool("rpmspec", "rpmlint")
    assert rpmspec("-q", "--qf", "%{name} %{version} %{arch}\\n").split() == ["pxed", pxed.__version__, "noarch"]
    requires = rpmspec("-q", "--requires").splitlines()
    for dep in ("tftp-server", "syslinux-nonlinux", "syslinux-efi64", "(lighttpd or darkhttpd)"):
        assert dep in requires, dep
    text = SPEC.read_text()
    for scriptlet in ("%systemd_post pxed.socket pxed-pxe.socket pxed.service",
                      "%systemd_preun pxed.socket pxed-pxe.socket pxed.service",
                      "%systemd_postun_with_restart pxed.service", "%pyproject_save_files",
                      "%config(noreplace) %{_sysconfdir}/pxed/pxed.conf"):
        assert scriptlet in text, scriptlet
    r = subprocess.run(["rpmlint", SPEC], capture_output=True, text=True)
    tags = [ln for ln in r.stdout.splitlines() if re.match(r"^pxed\.spec(:\d+)?: [EW]: ", ln)
            and not any(ok in ln for ok in RPMLINT_ACCEPTED)]
    assert not tags, r.stdout


def test_spec_files_cover_exactly_what_make_install_installs(tmp_path: Path) -> None:
    need_tool("rpmspec", "make")
    dest = tmp_path / "root"
    dirs_args = [f"UNITDIR={FEDORA_DIRS['_unitdir']}", f"GENERATORDIR={FEDORA_DIRS['_systemdgeneratordir']}",
                 f"BASHCOMPDIR={FEDORA_DIRS['bash_completions_dir']}"]
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr", *dirs_args], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    patterns, dirs = spec_files()
    files = {f for f in tree(dest) if not f.startswith("PYTHON/")}  # those are %{pyproject_files}
    unmatched = sorted(f for f in files if not any(fnmatch(f.rstrip("/"), p) for p in [*patterns, *dirs]))
    assert not unmatched, f"installed but not in %files: {unmatched}"
    unused = [p for p in patterns if not any(fnmatch(f, p) for f in files)]
    assert not unused, f"in %files but not installed: {unused}"
    own = sorted({p.relative_to(dest).as_posix() for p in dest.rglob("*pxed*") if p.is_dir()
                  and not SITE.match(p.relative_to(dest).as_posix() + "/")})
    assert own == sorted(dirs), "pxed's own directories must be listed with %dir"
