# pxed — see README.md.  The two commands for a fresh Debian 12 machine:
#   make demo    network-boot a VM through pxed in a lab namespace
#   make check   install what the tests need, then run them all
PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
PYTEST_ARGS ?=
BENCH_ARGS ?=

# Installation directories (all overridable; systemd's from pkg-config, with fallbacks).
DESTDIR ?=
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
DATADIR ?= $(PREFIX)/share
PKG_CONFIG ?= pkg-config
systemd_var = $(or $(shell $(PKG_CONFIG) --define-variable=prefix=$(PREFIX) --variable=$(1) systemd 2>/dev/null),$(2))
UNITDIR ?= $(call systemd_var,systemdsystemunitdir,$(PREFIX)/lib/systemd/system)
GENERATORDIR ?= $(call systemd_var,systemdsystemgeneratordir,$(PREFIX)/lib/systemd/system-generators)
SYSUSERSDIR ?= $(call systemd_var,sysusersdir,$(PREFIX)/lib/sysusers.d)
TMPFILESDIR ?= $(call systemd_var,tmpfilesdir,$(PREFIX)/lib/tmpfiles.d)
DBUSDIR ?= $(DATADIR)/dbus-1
POLKITDIR ?= $(DATADIR)/polkit-1
MANDIR ?= $(DATADIR)/man
BASHCOMPDIR ?= $(or $(shell $(PKG_CONFIG) --define-variable=prefix=$(PREFIX) --variable=completionsdir bash-completion 2>/dev/null),$(DATADIR)/bash-completion/completions)
NOBUILD ?=
VERSION := $(shell $(PYTHON) -c 'import pxed; print(pxed.__version__)')
WHEEL = dist/pxed-$(VERSION)-py3-none-any.whl

.PHONY: all wheel install install-python install-data dist deb arch rpm check deps deps-apt deps-pip test test-unit \
	test-integration test-system test-floor lint typecheck demo soak bench clean

all: wheel

wheel:
	$(PYTHON) -m build --wheel --no-isolation --outdir dist .

## make install: everything under $(DESTDIR); never runs systemctl (enable pxed.socket yourself,
## or let the distro package's preset/postinst do it).  NOBUILD=1 installs an existing wheel.
install: install-python install-data

install-python: $(if $(NOBUILD),,wheel)
	$(PYTHON) -m installer --destdir="$(DESTDIR)" --prefix="$(PREFIX)" $(WHEEL)

install-data:
	install -d "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(GENERATORDIR)" "$(DESTDIR)$(SYSUSERSDIR)" \
		"$(DESTDIR)$(TMPFILESDIR)" "$(DESTDIR)$(SYSCONFDIR)/pxed/pxed.conf.d"
	for u in units/pxed.socket units/pxed-pxe.socket units/pxed.service; do \
		sed 's|^ExecStart=/usr/bin/pxed|ExecStart=$(BINDIR)/pxed|' $$u > "$(DESTDIR)$(UNITDIR)/$${u#units/}"; \
		chmod 644 "$(DESTDIR)$(UNITDIR)/$${u#units/}"; \
	done
	ln -sf "$(BINDIR)/pxed-generator" "$(DESTDIR)$(GENERATORDIR)/pxed-generator"
	install -pm 644 packaging/sysusers.d/pxed.conf "$(DESTDIR)$(SYSUSERSDIR)/pxed.conf"
	install -pm 644 packaging/tmpfiles.d/pxed.conf "$(DESTDIR)$(TMPFILESDIR)/pxed.conf"
	test -e "$(DESTDIR)$(SYSCONFDIR)/pxed/pxed.conf" || \
		install -pm 644 etc/pxed/pxed.conf "$(DESTDIR)$(SYSCONFDIR)/pxed/pxed.conf"
	install -Dpm 644 -t "$(DESTDIR)$(DBUSDIR)/system.d" packaging/dbus/org.pxed.Pxed1.conf
	install -Dpm 644 -t "$(DESTDIR)$(DBUSDIR)/system-services" packaging/dbus/org.pxed.Pxed1.service
	install -Dpm 644 -t "$(DESTDIR)$(DBUSDIR)/interfaces" packaging/dbus/org.pxed.Pxed1.Manager.xml \
		packaging/dbus/org.pxed.Pxed1.Job.xml
	install -Dpm 644 -t "$(DESTDIR)$(POLKITDIR)/actions" packaging/polkit/org.pxed.Pxed1.policy
	install -Dpm 644 -t "$(DESTDIR)$(POLKITDIR)/rules.d" packaging/polkit/rules.d/50-pxed.rules
	install -Dpm 644 -t "$(DESTDIR)$(MANDIR)/man1" man/pxectl.1
	install -Dpm 644 -t "$(DESTDIR)$(MANDIR)/man5" man/pxed.conf.5
	install -Dpm 644 -t "$(DESTDIR)$(MANDIR)/man8" man/pxed.8
	printf '.so man8/pxed.8\n' > "$(DESTDIR)$(MANDIR)/man8/pxed-generator.8"  # documented in pxed(8)
	chmod 644 "$(DESTDIR)$(MANDIR)/man8/pxed-generator.8"
	install -Dpm 644 etc/bash-completion/pxectl "$(DESTDIR)$(BASHCOMPDIR)/pxectl"

## make dist: the source tarball dist/pxed-$(VERSION).tar.gz that the Arch and RPM packages build from.
DIST_SOURCES = Makefile README.md pyproject.toml setup.cfg pxed units packaging etc man
TARBALL ?= dist/pxed-$(VERSION).tar.gz
dist:
	mkdir -p $(dir $(TARBALL))
	tar -c --sort=name --owner=0 --group=0 --numeric-owner --exclude=__pycache__ \
		--transform='s,^,pxed-$(VERSION)/,' $(DIST_SOURCES) | gzip -9n > $(TARBALL)

## make deb: the Debian package, $(DEB) (dpkg-buildpackage -b in build/deb/pxed-$(VERSION), the
## tarball unpacked with packaging/debian as ./debian; the repository itself keeps no debian/).
DEB_BUILD ?= build/deb
DEB ?= dist/pxed_$(VERSION)_all.deb
deb: dist
	rm -rf $(DEB_BUILD)
	mkdir -p $(DEB_BUILD) $(dir $(DEB))
	tar -xzf $(TARBALL) -C $(DEB_BUILD)
	cp -r $(DEB_BUILD)/pxed-$(VERSION)/packaging/debian $(DEB_BUILD)/pxed-$(VERSION)/debian
	cd $(DEB_BUILD)/pxed-$(VERSION) && dpkg-buildpackage -b -us -uc
	cp $(DEB_BUILD)/pxed_$(VERSION)_all.deb $(DEB)
	@echo "built $(DEB)"

## make arch: the Arch package, $(ARCH_PKG): makepkg on `make dist`'s tarball in a fresh directory
## under /tmp, as $(ARCH_USER) when run as root (makepkg refuses root), with --nodeps: Arch's
## packages (python-dbus-fast, tftp-hpa, ...) are not installed on Debian for makepkg to find.
## Arch's `python` is Debian's /usr/bin/python (python-is-python3), so the scripts' #! is Arch's
## #!/usr/bin/python, but the Python files land where Debian's python3 installs them
## (DEB_PYTHON_INSTALL_LAYOUT: /usr/lib/python3/dist-packages; Arch's is python3.X/site-packages):
## the package built here checks the PKGBUILD (files, .PKGINFO, .INSTALL); on Arch, makepkg builds
## the one to install.
## pacman, asked by makepkg for .BUILDINFO's installed packages, reads an empty database of its own.
ARCH_PKG ?= dist/pxed-$(VERSION)-1-any.pkg.tar.zst
ARCH_USER ?= nobody
ARCH_PACKAGER ?= pxed make arch <maintainers@users.noreply.r-seed-65be0f0f.example>
arch: dist
	mkdir -p $(dir $(ARCH_PKG))
	set -e; d=$$(mktemp -d /tmp/pxed-arch.XXXXXX); trap 'rm -rf "$$d"' EXIT; chmod 755 "$$d"; \
	cp packaging/arch/PKGBUILD packaging/arch/pxed.install "$$d"/; \
	cp $(TARBALL) "$$d"/pxed-$(VERSION).tar.gz; \
	mkdir -p "$$d"/bin "$$d"/pacman/local; echo 9 > "$$d"/pacman/local/ALPM_DB_VERSION; \
	printf '#!/bin/sh\nexec /usr/bin/pacman --dbpath "%s/pacman" "$$@"\n' "$$d" > "$$d"/bin/pacman; \
	chmod 755 "$$d"/bin/pacman; \
	if [ "$$(id -u)" = 0 ]; then chown -R $(ARCH_USER) "$$d"; as="runuser -u $(ARCH_USER) --"; else as=; fi; \
	cd "$$d" && $$as env -i HOME="$$d" PATH="$$d/bin:/usr/bin:/bin" DEB_PYTHON_INSTALL_LAYOUT=deb_system \
		PKGEXT=.pkg.tar.zst PACKAGER="$(ARCH_PACKAGER)" makepkg --nodeps --noconfirm --noprogressbar; \
	cp "$$d"/pxed-$(VERSION)-1-any.pkg.tar.zst $(abspath $(ARCH_PKG))
	@echo "built $(ARCH_PKG)"

## make rpm: the Fedora package, $(RPM): rpmbuild -bb on `make dist`'s tarball in $(RPM_BUILD), with
## --nodeps (its BuildRequires are Fedora's packages, absent from Debian's empty rpm database) and
## packaging/rpm/macros.fedora loaded: stand-ins for the Fedora macros Debian's rpm lacks
## (systemd-rpm-macros' directories and scriptlets, pyproject-rpm-macros' %pyproject_*).
## rpmlint then checks the spec and the package with Fedora's settings (packaging/rpm/rpmlint.toml):
## no errors; the warnings left are explained in the spec.
RPM_BUILD ?= build/rpm
RPM ?= dist/pxed-$(VERSION)-1.noarch.rpm
rpm: dist
	rm -rf $(RPM_BUILD)
	mkdir -p $(RPM_BUILD)/SOURCES $(dir $(RPM))
	cp $(TARBALL) $(RPM_BUILD)/SOURCES/pxed-$(VERSION).tar.gz
	rpmbuild -bb --nodeps --load=packaging/rpm/macros.fedora --define "_topdir $(abspath $(RPM_BUILD))" \
		packaging/rpm/pxed.spec
	cp $(RPM_BUILD)/RPMS/noarch/pxed-$(VERSION)-1.noarch.rpm $(RPM)
	rpmlint -c packaging/rpm/rpmlint.toml packaging/rpm/pxed.spec $(RPM)
	@echo "built $(RPM)"

## Install everything the tests, demo and benchmarks need (apt-get + pip).
deps:
	tools/install-deps all

deps-apt:
	tools/install-deps apt

deps-pip:
	tools/install-deps pip

## make check: dependencies, then linters, type checks, every test, and the tests again with
## Debian 12's library versions (pyroute2 0.7.2, jinja2 3.1.2, pycdlib 1.12, dbus-fast 1.84).
check: deps
	$(MAKE) lint typecheck
	$(MAKE) deb arch rpm
	PXED_DEB=$(abspath $(DEB)) PXED_ARCH_PKG=$(abspath $(ARCH_PKG)) PXED_RPM=$(abspath $(RPM)) \
		$(PYTEST) $(PYTEST_ARGS)
	$(MAKE) test-floor

FLOOR_VENV ?= build/venv-floor
FLOOR_PACKAGES = pyroute2==0.7.2 jinja2==3.1.2 pycdlib==1.12.0 dbus-fast==1.84.2 systemd-python \
	pytest hypothesis dpkt
test-floor:
	$(PYTHON) -m venv --clear $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install -q --disable-pip-version-check $(FLOOR_PACKAGES)
	$(FLOOR_VENV)/bin/python -m pytest -p no:cacheprovider -m "not qemu and not slow" $(PYTEST_ARGS)

test:
	$(PYTEST) $(PYTEST_ARGS)

test-unit:
	$(PYTEST) -m "not integration and not qemu and not system" $(PYTEST_ARGS)

test-integration:
	$(PYTEST) -m "integration or qemu or system" $(PYTEST_ARGS)

## make test-system: the installed .deb of pxed under systemd as PID 1 (systemd-nspawn, debootstrap'd
## Debian 12 tree cached in /var/cache/pxed-systest) on a lab network, booted by a QEMU client.
test-system: deb
	PXED_DEB=$(abspath $(DEB)) $(PYTEST) -m system tests/system $(PYTEST_ARGS)

lint:
	$(PYTHON) -m ruff check pxed tests tools

typecheck:
	$(PYTHON) -m mypy

## make demo: a VM boots from pxed in a lab network namespace (serial console shown).
## make demo UEFI=1: OVMF instead of SeaBIOS; make demo SECUREBOOT=1: OVMF with Secure Boot, shim + GRUB.
demo: deps
	$(PYTHON) -m tests.lab.demo $(if $(UEFI),--uefi) $(if $(SECUREBOOT),--secure-boot) $(DEMO_ARGS)

## make soak: boot the lab VM again and again through pxed (100 BIOS, 100 UEFI, 20 Secure Boot);
## every boot must reach Linux; a failed one prints its capture summary and journals. SOAK_ARGS=--runs 20 ...
soak: deps
	$(PYTHON) -m tests.soak $(SOAK_ARGS)

## make bench: ratios against dnsmasq and cp, measured in the same run.
bench: deps
	$(PYTHON) -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .lab
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
