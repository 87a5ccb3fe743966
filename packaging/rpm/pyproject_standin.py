"""The work of Fedora's %pyproject_* macros, for building pxed.spec on Debian (macros.fedora).

    buildrequires                          print the build backend's requirements (setuptools)
    install BUILDROOT WHEELDIR             install the one wheel: posix_prefix under /usr, #!/usr/bin/python3
    save-files BUILDROOT SITELIB OUT [-L] NAME...   write the %files list of those packages and their dist-info
    check-import BUILDROOT SITELIB FILES   import every module of the installed package
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import sysconfig
import tomllib
from pathlib import Path


def buildrequires() -> None:
    for req in tomllib.loads(Path("pyproject.toml").read_text())["build-system"]["requires"]:
        name, _, version = req.partition(">=")
        print(f"python3dist({name.strip().lower()})" + (f" >= {version.strip()}" if version else ""))


def install(buildroot: str, wheeldir: str) -> None:
    from installer import install as install_wheel
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    (wheel,) = Path(wheeldir).glob("*.whl")
    scheme = sysconfig.get_paths("posix_prefix", vars={"base": "/usr", "platbase": "/usr"})
    with WheelFile.open(wheel) as source:
        install_wheel(source, SchemeDictionaryDestination(scheme, "/usr/bin/python3", "posix", destdir=buildroot,
                                                          bytecode_optimization_levels=[]), {})


def save_files(buildroot: str, sitelib: str, out: str, *names: str) -> None:
    site = Path(buildroot + sitelib)
    lines = []
    for name in (n for n in names if not n.startswith("-")):
        assert (site / name / "__init__.py").is_file(), f"no package {name} in {site}"
        lines.append(f"{sitelib}/{name}/")
        lines += [f"{sitelib}/{d.name}/" for d in site.glob(f"{name}-*.dist-info")]
    Path(out).write_text("".join(f"{ln}\n" for ln in lines))


def check_import(buildroot: str, sitelib: str, files: str) -> None:
    sys.path.insert(0, buildroot + sitelib)
    for line in Path(files).read_text().split():
        name = Path(line).name
        if name.endswith(".dist-info"):
            continue
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            importlib.import_module(module.name)
    print(f"imported every module of {os.path.basename(files)} from {buildroot + sitelib}")


COMMANDS = {"buildrequires": buildrequires, "install": install, "save-files": save_files,
            "check-import": check_import}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
