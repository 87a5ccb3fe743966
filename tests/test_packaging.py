"""The distro packages (Debian, Arch, Fedora), each checked against what `make install` installs.

The .deb is built once per session (about 10 s) and then inspected: its files must be exactly
what `make install` installs (one list of what an installation contains), lintian must find no
error or warning, its Python package must run from Debian's path layout, and its maintainer
scripts, run against a scratch root with the real systemd-sysusers, systemd-tmpfiles and
deb-systemd-helper, must create the users and the boot root but enable nothing.

The Arch package (`make arch`: makepkg --nodeps as an unprivileged user) and the RPM (`make rpm`:
rpmbuild --nodeps with packaging/rpm/macros.fedora standing in for Fedora's macros, then rpmlint)
are built once per session too, or taken from PXED_ARCH_PKG and PXED_RPM (`make check` builds
them first). Each package's file list must be the .deb's, with only the distro's directories told
apart; its scriptlets must name the .deb's units and enable nothing; it must bundle no dependency.
Both are installed into a scratch root (rpm --root --nodeps, pacman -U --root -dd) and checked
there as the .deb's files are, sysusers and tmpfiles applied as Fedora's rpm and systemd and
Arch's systemd hooks apply them.
"""
from __future__ import annotations

import os
import re
import subprocess
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


UNITS = ("pxed.socket", "pxed-pxe.socket", "pxed.service")


def assert_installed_layout(root: Path, unitdir: str, gendir: str) -> None:
    """The units, the generator's link to its script, D-Bus, polkit, man pages, completion and
    the shipped sysusers.d/tmpfiles.d files, where an installed pxed has them under root."""
    for unit in UNITS:
        assert (root / unitdir / unit).is_file(), unit
    assert "ExecStart=/usr/bin/pxed\n" in (root / unitdir / "pxed.service").read_text()
    assert (root / "usr/bin/pxed").is_file()
    generator = root / gendir / "pxed-generator"
    assert generator.is_symlink() and (root / os.readlink(generator).lstrip("/")).is_file()
    for name in ("dbus-1/system.d/org.pxed.Pxed1.conf", "dbus-1/system-services/org.pxed.Pxed1.service",
                 "dbus-1/interfaces/org.pxed.Pxed1.Manager.xml", "dbus-1/interfaces/org.pxed.Pxed1.Job.xml",
                 "polkit-1/actions/org.pxed.Pxed1.policy", "polkit-1/rules.d/50-pxed.rules",
                 "man/man1/pxectl.1.gz", "man/man5/pxed.conf.5.gz", "man/man8/pxed.8.gz",
                 "man/man8/pxed-generator.8.gz", "bash-completion/completions/pxectl"):
        assert (root / "usr/share" / name).exists(), name
    service = (root / "usr/share/dbus-1/system-services/org.pxed.Pxed1.service").read_text()
    assert "SystemdService=pxed.service\n" in service
    for kind in ("sysusers.d", "tmpfiles.d"):
        shipped = (REPO / "packaging" / kind / "pxed.conf").read_bytes()
        assert (root / "usr/lib" / kind / "pxed.conf").read_bytes() == shipped, kind


def assert_python_package_runs(root: Path, site: Path, python: str, tmp_path: Path) -> None:
    """Every module imports, and the scripts run, with the interpreter their #! names and the
    host's libraries (Debian 12's python3-dbus-fast, ... from tools/install-deps)."""
    shebangs = {(root / "usr/bin" / s).read_text().splitlines()[0] for s in ("pxed", "pxectl", "pxed-generator")}
    assert shebangs == {f"#!{python}"}
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
        r = subprocess.run([python, root / "usr/bin" / script, "--version"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0 and pxed.__version__ in r.stdout + r.stderr, (script, r.stdout, r.stderr)


def assert_users_and_boot_root_but_nothing_enabled(root: Path) -> None:
    users = {ln.split(":")[0]: ln.split(":") for ln in (root / "etc/passwd").read_text().splitlines()}
    groups = {ln.split(":")[0] for ln in (root / "etc/group").read_text().splitlines()}
    assert {"pxed", "pxed-tftp", "pxed-http"} <= users.keys() and "pxed-admin" in groups
    boot = (root / "var/lib/pxed/boot").stat()
    assert (boot.st_uid, boot.st_mode & 0o7777) == (int(users["pxed"][2]), 0o755)
    assert not (root / "etc/systemd/system/sockets.target.wants").exists(), "a fresh install enabled pxed"


def test_deb_layout_and_metadata(deb: Deb) -> None:
    unitdir = pkg_config("systemdsystemunitdir", "/lib/systemd/system").lstrip("/")
    gendir = pkg_config("systemdsystemgeneratordir", "/lib/systemd/system-generators").lstrip("/")
    assert_installed_layout(deb.root, unitdir, gendir)
    assert (deb.root / "usr/share/doc/pxed/README.Debian").is_file()
    assert (deb.control / "conffiles").read_text().split() == ["/etc/pxed/pxed.conf"]
    assert control_field(deb, "Version") == pxed.__version__
    assert control_field(deb, "Architecture") == "all"
    depends = [d.strip() for d in control_field(deb, "Depends").split(",")]
    for dep in DEB_DEPENDS:
        assert dep in depends, dep
    assert any(d.startswith("python3:any (>= 3.11") for d in depends)
    assert any(d.startswith("systemd") and "sysusers" in d for d in depends)  # dh_installsysusers's


def test_deb_python_package_runs_from_debian_path_layout(deb: Deb, tmp_path: Path) -> None:
    assert_python_package_runs(deb.root, deb.root / "usr/lib/python3/dist-packages", "/usr/bin/python3", tmp_path)


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
    assert_users_and_boot_root_but_nothing_enabled(root)
    calls = log.read_text().splitlines() if log.exists() else []
    assert not [c for c in calls if c.split()[:2] in (["systemctl", "enable"], ["systemctl", "start"])], calls


# --- Arch and Fedora: the packages built by `make arch` and `make rpm`, against the .deb ----------

ARCH_DEPENDS = {"python", "python-dbus-fast", "python-systemd", "python-pyroute2", "python-jinja", "python-pycdlib",
                "tftp-hpa", "syslinux", "darkhttpd"}
PKGBUILD = REPO / "packaging/arch/PKGBUILD"
SPEC = REPO / "packaging/rpm/pxed.spec"
FEDORA_MACROS = REPO / "packaging/rpm/macros.fedora"
RPM_REQUIRES = ("tftp-server", "syslinux-nonlinux", "syslinux-efi64", "(lighttpd or darkhttpd)")
RPM_RECOMMENDS = ("dbus", "polkit", "hwdata", "(shim-x64 or shim-aa64)", "(grub2-efi-x64 or grub2-efi-aa64)")
PYTHON_REQUIRES = ("dbus-fast", "systemd-python", "pyroute2", "jinja2", "pycdlib")  # setup.cfg's install_requires
UNIT_NAME = re.compile(r"\bpxed[\w-]*\.(?:socket|service)\b")
DEBIAN_ROOT_LIB = re.compile(r"^lib/systemd/")  # bookworm's systemd.pc: units in /lib, not /usr/lib


@dataclass(frozen=True)
class Built:
    path: Path
    root: Path  # the package's files, unpacked
    meta: Path  # Arch: .PKGINFO, .INSTALL, ... (RPM: unused, its metadata is read with rpm -qp)


def build_once(tmp_path_factory: pytest.TempPathFactory, env: str, target: str, variable: str, name: str) -> Path:
    """The package `make check` built (env names it), else `make TARGET` into a temporary directory."""
    if os.environ.get(env):
        return Path(os.environ[env])
    out = tmp_path_factory.mktemp(target)
    r = subprocess.run(["make", "-s", target, f"{variable}={out / name}", f"TARBALL={out / 'pxed.tar.gz'}",
                        f"RPM_BUILD={out / 'build'}"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return out / name


@pytest.fixture(scope="session")
def arch_pkg(tmp_path_factory: pytest.TempPathFactory) -> Built:
    need_tool("make", "makepkg", "pacman", "fakeroot", "bsdtar", "zstd", "/usr/bin/python")
    path = build_once(tmp_path_factory, "PXED_ARCH_PKG", "arch", "ARCH_PKG",
                      f"pxed-{pxed.__version__}-1-any.pkg.tar.zst")
    out = tmp_path_factory.mktemp("arch-root")
    root, meta = out / "root", out / "meta"
    root.mkdir()
    meta.mkdir()
    subprocess.run(["bsdtar", "-xpf", path, "-C", root], check=True)
    for dotfile in root.glob(".*"):
        dotfile.rename(meta / dotfile.name)
    return Built(path, root, meta)


@pytest.fixture(scope="session")
def rpm_pkg(tmp_path_factory: pytest.TempPathFactory) -> Built:
    need_tool("make", "rpmbuild", "rpmlint", "rpm2cpio", "cpio")
    path = build_once(tmp_path_factory, "PXED_RPM", "rpm", "RPM", f"pxed-{pxed.__version__}-1.noarch.rpm")
    root = tmp_path_factory.mktemp("rpm-root")
    subprocess.run(f"rpm2cpio '{path}' | cpio -idm --quiet", shell=True, cwd=root, check=True)
    return Built(path, root, root)


def rpm_query(pkg: Built, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, pkg.path], capture_output=True, text=True, check=True).stdout


def pkginfo(pkg: Built) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (pkg.meta / ".PKGINFO").read_text().splitlines():
        if " = " in line and not line.startswith("#"):
            key, _, value = line.partition(" = ")
            values.setdefault(key, []).append(value)
    return values


def distro_neutral(files: set[str]) -> set[str]:
    """tree()'s paths with Debian 12's /lib/systemd written as /usr/lib/systemd (Arch and Fedora
    have merged /usr; bookworm's systemd.pc still says /lib)."""
    return {DEBIAN_ROOT_LIB.sub("usr/lib/systemd/", f) for f in files}


def assert_same_files(name: str, theirs: set[str], deb: set[str]) -> None:
    assert theirs == deb, f"only in the {name}: {sorted(theirs - deb)}; only in the .deb: {sorted(deb - theirs)}"


def assert_no_bundled_dependency(files: set[str]) -> None:
    python = {f.split("/")[1] for f in files if f.startswith("PYTHON/")}
    assert python == {"pxed"}, f"Python packages besides pxed: {sorted(python - {'pxed'})}"
    assert not [f for f in files if f.endswith((".so", ".whl", ".tar.gz")) or "/vendor" in f]


def test_arch_package_holds_the_debs_files_and_bundles_nothing(arch_pkg: Built, deb: Deb) -> None:
    """The built package's file list (as pacman reads it, and unpacked) against the .deb's: the same
    units, generator, D-Bus and polkit files, sysusers/tmpfiles, man pages and completion."""
    files = tree(arch_pkg.root)
    assert_same_files("Arch package", files, distro_neutral(tree(deb.root)))
    assert_no_bundled_dependency(files)
    listed = subprocess.run(["pacman", "-Qlpq", arch_pkg.path], capture_output=True, text=True, check=True).stdout
    unpacked = {"/" + p.relative_to(arch_pkg.root).as_posix() for p in arch_pkg.root.rglob("*")
                if not p.is_dir() or p.is_symlink()}
    assert {ln for ln in listed.splitlines() if not ln.endswith("/")} == unpacked
    assert_installed_layout(arch_pkg.root, "usr/lib/systemd/system", "usr/lib/systemd/system-generators")
    assert (arch_pkg.root / "usr/bin/pxed").read_text().startswith("#!/usr/bin/python\n")  # Arch's python


def test_arch_package_metadata_and_install_script(arch_pkg: Built) -> None:
    """.PKGINFO as makepkg wrote it; .INSTALL only tells the admin (pacman's systemd hooks apply
    sysusers.d and tmpfiles.d and reload systemd; nothing is enabled)."""
    info = pkginfo(arch_pkg)
    assert info["pkgname"] == ["pxed"] and info["pkgver"] == [f"{pxed.__version__}-1"] and info["arch"] == ["any"]
    assert set(info["depend"]) == ARCH_DEPENDS
    assert info["backup"] == ["etc/pxed/pxed.conf"]
    optional = {d.split(":")[0] for d in info["optdepend"]}
    assert optional == {"lighttpd", "polkit", "hwdata", "memtest86+"}  # no signed shim/GRUB in Arch's repos
    install = arch_pkg.meta / ".INSTALL"
    assert install.read_bytes() == (PKGBUILD.parent / "pxed.install").read_bytes()
    subprocess.run(["bash", "-n", install], check=True)
    body = [ln.strip() for ln in install.read_text().splitlines() if not re.fullmatch(r"\w+\(\) \{|\}", ln)]
    assert all(ln.startswith("echo ") for ln in body), body  # it tells the admin; it enables and starts nothing


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
    assert v["source"] == [f"pxed-{pxed.__version__}.tar.gz"]


def test_rpm_holds_the_debs_files_and_bundles_nothing(rpm_pkg: Built, deb: Deb) -> None:
    """The RPM's file list (rpm -qlp, and unpacked by rpm2cpio) against the .deb's."""
    files = tree(rpm_pkg.root)
    assert_same_files("RPM", files, distro_neutral(tree(deb.root)))
    assert_no_bundled_dependency(files)
    listed = set(rpm_query(rpm_pkg, "-l").split())  # files and the directories pxed owns (cpio makes all)
    unpacked = {"/" + p.relative_to(rpm_pkg.root).as_posix(): p for p in rpm_pkg.root.rglob("*")}
    assert listed <= unpacked.keys(), sorted(listed - unpacked.keys())
    assert {name for name, p in unpacked.items() if not p.is_dir() or p.is_symlink()} <= listed
    assert rpm_query(rpm_pkg, "-c").split() == ["/etc/pxed/pxed.conf"]
    assert "/usr/share/doc/pxed/README.md" in rpm_query(rpm_pkg, "-d").split()


def test_rpm_metadata_and_dependencies(rpm_pkg: Built) -> None:
    """Requires as the spec says, the python3dist(...) ones generated from the wheel's metadata (no
    library is bundled: they are dependencies), and the .deb's Recommends as weak dependencies."""
    assert rpm_query(rpm_pkg, "--qf", "%{name} %{version} %{release} %{arch}").split() == \
        ["pxed", pxed.__version__, "1", "noarch"]
    requires = rpm_query(rpm_pkg, "--requires").splitlines()
    for dep in RPM_REQUIRES:
        assert dep in requires, dep
    for name in PYTHON_REQUIRES:
        assert any(re.fullmatch(rf"python3\.\d+dist\({name}\) >= [\d.]+", r) for r in requires), (name, requires)
    assert any(r.startswith("python(abi) = 3.") for r in requires)
    assert set(rpm_query(rpm_pkg, "--recommends").splitlines()) == set(RPM_RECOMMENDS)


def test_rpm_scriptlets_handle_the_debs_units_and_enable_nothing(rpm_pkg: Built, deb: Deb) -> None:
    """%post, %preun and %postun (Fedora's systemd macros) name the units the .deb's maintainer
    scripts handle; install applies the presets (Fedora's default disables pxed), as the .deb's
    postinst enables nothing. sysusers.d and tmpfiles.d are applied by rpm and systemd's file
    triggers on Fedora, not by scriptlets (test_rpm_installs_into_a_scratch_root applies them)."""
    deb_scripts = "".join((deb.control / s).read_text() for s in ("postinst", "prerm", "postrm"))
    deb_units = set(UNIT_NAME.findall(deb_scripts))
    assert deb_units == set(UNITS)
    post, preun, postun = (rpm_query(rpm_pkg, "--qf", f"%{{{tag}}}") for tag in ("POSTIN", "PREUN", "POSTUN"))
    assert "systemd-update-helper install-system-units " in post and set(UNIT_NAME.findall(post)) == deb_units
    assert "systemd-update-helper remove-system-units " in preun and set(UNIT_NAME.findall(preun)) == deb_units
    assert "systemd-update-helper mark-restart-system-units pxed.service" in postun
    for script in (post, preun, postun):
        assert "systemctl enable" not in script and "systemctl start" not in script


def explained_rpmlint_warnings() -> set[str]:
    """The warnings pxed.spec's header explains ('#   tag   why')."""
    return set(re.findall(r"^#   ([a-z][\w-]+) {2,}", SPEC.read_text(), re.M))


def test_rpmlint_finds_no_errors_and_only_the_warnings_the_spec_explains(rpm_pkg: Built) -> None:
    """rpmlint with Fedora's settings (packaging/rpm/rpmlint.toml) on the spec and the built RPM."""
    r = subprocess.run(["rpmlint", "-c", REPO / "packaging/rpm/rpmlint.toml", SPEC, rpm_pkg.path],
                       capture_output=True, text=True)
    print(r.stdout)
    found = re.findall(r"^pxed(?:\.spec|\.noarch)(?::\d+)?: ([EW]): (\S+)", r.stdout, re.M)
    assert not [tag for level, tag in found if level == "E"], r.stdout
    unexplained = {tag for _, tag in found} - explained_rpmlint_warnings()
    assert not unexplained, f"rpmlint warnings not explained in pxed.spec: {sorted(unexplained)}\n{r.stdout}"
    assert r.returncode == 0, r.stdout + r.stderr


def test_rpm_installs_into_a_scratch_root_with_the_debs_layout(rpm_pkg: Built, tmp_path: Path) -> None:
    """rpm --root --nodeps into an empty tree (Fedora's packages are not there to depend on), then
    what Fedora's rpm and systemd do with the files: the sysusers.d entries and the tmpfiles.d boot
    root applied to that root. The layout and the users as the .deb's; rpm -V agrees with the files;
    the scriptlets are not run (no shell in an empty root: see the scriptlet test)."""
    need(os.geteuid() == 0, "needs root (rpm --root owns the files as root; systemd-tmpfiles chowns)")
    need_tool("rpm", "systemd-sysusers", "systemd-tmpfiles")
    root = tmp_path / "root"
    rpm = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    r = subprocess.run([*rpm, "-i", "--nodeps", "--noscripts", rpm_pkg.path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*rpm, "-V", "--nodeps", "pxed"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_installed_layout(root, "usr/lib/systemd/system", "usr/lib/systemd/system-generators")
    (site,) = root.glob("usr/lib/python3.*/site-packages")
    assert_python_package_runs(root, site, "/usr/bin/python3", tmp_path)
    apply_sysusers_and_tmpfiles(root)
    assert_users_and_boot_root_but_nothing_enabled(root)


def test_arch_package_installs_into_a_scratch_root_with_the_debs_layout(arch_pkg: Built, tmp_path: Path) -> None:
    """pacman -U --root -dd into an empty tree with an empty database, without the install script
    and hooks; pacman -Qkk agrees with the files; then what Arch's systemd hooks do (sysusers.d,
    tmpfiles.d). The layout and the users as the .deb's. The Python files are where Debian's
    python3 put them (make arch builds with it), so the package runs here as Arch's would there."""
    need(os.geteuid() == 0, "needs root (pacman --root owns the files as root; systemd-tmpfiles chowns)")
    need_tool("pacman", "systemd-sysusers", "systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "var/lib/pacman/local").mkdir(parents=True)
    (root / "var/lib/pacman/local/ALPM_DB_VERSION").write_text("9\n")
    pacman = ["pacman", "--root", str(root), "--dbpath", str(root / "var/lib/pacman"), "--config", "/dev/null",
              "--hookdir", str(tmp_path / "no-hooks")]
    r = subprocess.run([*pacman, "-U", "-dd", "--noscriptlet", "--noconfirm", "--noprogressbar", arch_pkg.path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([*pacman, "-Qkk", "pxed"], capture_output=True, text=True)
    assert r.returncode == 0 and " 0 altered files" in r.stdout, r.stdout + r.stderr
    assert_installed_layout(root, "usr/lib/systemd/system", "usr/lib/systemd/system-generators")
    assert_python_package_runs(root, root / "usr/lib/python3/dist-packages", "/usr/bin/python", tmp_path)
    apply_sysusers_and_tmpfiles(root)
    assert_users_and_boot_root_but_nothing_enabled(root)


def apply_sysusers_and_tmpfiles(root: Path) -> None:
    """What Fedora's rpm and systemd triggers, and Arch's systemd hooks, do with pxed's files."""
    for tool in (["systemd-sysusers", f"--root={root}", "pxed.conf"],
                 ["systemd-tmpfiles", f"--root={root}", "--create", "pxed.conf"]):
        r = subprocess.run(tool, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


# --- Fedora: the spec, expanded by rpmspec; its %files against make install with Fedora's dirs ----

FEDORA_DIRS = ("_unitdir", "_systemdgeneratordir", "bash_completions_dir")


def rpmspec(*args: str) -> str:
    r = subprocess.run(["rpmspec", f"--load={FEDORA_MACROS}", *args, SPEC], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def fedora_dir(macro: str) -> str:
    return subprocess.run(["rpm", f"--load={FEDORA_MACROS}", "--eval", f"%{{{macro}}}"], capture_output=True,
                          text=True, check=True).stdout.strip()


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


def test_spec_metadata() -> None:
    need_tool("rpmspec")
    assert rpmspec("-q", "--qf", "%{name} %{version} %{arch}\\n").split() == ["pxed", pxed.__version__, "noarch"]
    requires = rpmspec("-q", "--requires").splitlines()
    for dep in RPM_REQUIRES:
        assert dep in requires, dep
    text = SPEC.read_text()
    for line in ("%systemd_post pxed.socket pxed-pxe.socket pxed.service",
                 "%systemd_preun pxed.socket pxed-pxe.socket pxed.service",
                 "%systemd_postun_with_restart pxed.service", "%pyproject_save_files",
                 "%config(noreplace) %{_sysconfdir}/pxed/pxed.conf"):
        assert line in text, line


def test_spec_files_cover_exactly_what_make_install_installs(tmp_path: Path) -> None:
    need_tool("rpmspec", "make")
    dest = tmp_path / "root"
    unitdir, gendir, compdir = (fedora_dir(m) for m in FEDORA_DIRS)
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr", f"UNITDIR={unitdir}",
                        f"GENERATORDIR={gendir}", f"BASHCOMPDIR={compdir}"], cwd=REPO, capture_output=True, text=True)
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
