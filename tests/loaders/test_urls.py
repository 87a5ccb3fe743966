"""Every path a rendered menu fetches, decoded as an HTTP server decodes it, is the image's own file.

Images' kernel and initrd paths come from the ISO.  Whatever they are, the syslinux menus
(``LINUX``/``INITRD`` URLs, INITRD split at commas as syslinux does) and grub.cfg
(``${pxed}/'path'`` words of ``linux``/``initrd``) either refuse the entry or name, once
percent-decoded and normalised, exactly ``images/<id>/<path>``: inside the image directory.
"""

from __future__ import annotations

import ipaddress
import posixpath
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pxed import rules
from pxed.config import Config, load_config
from pxed.errors import InvalidArgument
from pxed.images.catalog import Detection, ImageRecord, ImageState
from pxed.menus import render_menus
from pxed.model import Installed
from tests.loaders.test_grub import GRUB_CONF, grub_words

SERVER = ipaddress.IPv4Address("10.77.0.1")
PREFIX = "http://10.77.0.1/"
# Characters that matter to a loader, a URL or a path, and a few ordinary ones.
ALPHABET = st.sampled_from(list("ab.-_/%2eE,; '\"$\\\n\t?#:+@~=") + ["%2e", "%2f", "..", "%00", "\u00e9", "\x00"])
SAFE = st.from_regex(r"[a-z0-9][a-z0-9._+@~-]{0,8}(/[a-z0-9_+@~-][a-z0-9._+@~-]{0,8}){0,3}", fullmatch=True)
PATH = st.one_of(SAFE, st.lists(ALPHABET, min_size=1, max_size=12).map("".join))


def fetched(files: dict[str, str]) -> list[str]:
    """The path of every file a menu makes the loader fetch, as the server will decode it."""
    out: list[str] = []
    for rel, text in files.items():
        for line in text.splitlines():
            if rel.startswith("grub/") or rel.startswith("debian-installer/"):
                words = grub_words(line.strip())
                if words and words[0] in ("linux", "initrd"):
                    out += [w[len("${pxed}/"):] for w in words[1:] if w.startswith("${pxed}/")]
                    assert words[0] == "linux" or all(w.startswith("${pxed}/") for w in words[1:]), line
            else:
                word, _, rest = line.partition(" ")
                if word in ("LINUX", "INITRD") and rest != "memdisk":
                    for url in rest.split(","):
                        assert url.startswith(PREFIX), line
                        out.append(url[len(PREFIX):])
    return [posixpath.normpath(urllib.parse.unquote(p)) for p in out]


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> list[Config]:
    """syslinux for every firmware class, and GRUB for the UEFI ones (syslinux keeps BIOS)."""
    grub = tmp_path_factory.mktemp("urls") / "pxed.conf"
    grub.write_text(GRUB_CONF)
    return [load_config(Path("/nonexistent"), system_root=None), load_config(grub, system_root=None)]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.from_regex(rules.ID_RE.pattern.replace("\\Z", ""), fullmatch=True), PATH, st.lists(PATH, max_size=3))
def test_every_fetched_path_is_the_images_own_file(configs: list[Config], image_id: str, kernel: str,
                                                   initrds: list[str]) -> None:
    det = Detection(profile="generic", kernel=kernel, initrds=tuple(initrds), files=(kernel, *initrds),
                    cmdline="quiet")
    entry = ImageRecord(id=image_id, title="T", state=ImageState.READY, detection=det).boot_entry("10.77.0.1")
    safe = all(_safe(p) for p in (kernel, *initrds)) and image_id not in rules.RESERVED_IDS
    for c in configs:
        try:
            files = render_menus(c, [entry], SERVER, installed=Installed(), template_dir=None)
        except InvalidArgument:
            assert not safe, (kernel, initrds)
            continue
        want = {f"images/{image_id}/{p}" for p in (kernel, *initrds)}
        got = fetched(files)
        assert got and set(got) == want, (got, want)
        assert all(p.startswith(f"images/{image_id}/") for p in got)


def _safe(path: str) -> bool:
    try:
        rules.check_boot_path(path)
    except ValueError:
        return False
    return True
