"""Small but real ISO 9660 images for import tests, written with pycdlib."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pycdlib


def make_iso(path: Path, *, label: str = "PXEDTEST", payload: int = 1 << 20) -> Path:
    """An ISO with a README and a ``payload``-byte data file (random, so sizes are real)."""
    iso = pycdlib.PyCdlib()
    iso.new(joliet=3, rock_ridge="1.09", vol_ident=label)
    readme = b"pxed test image\n"
    iso.add_fp(io.BytesIO(readme), len(readme), "/README.TXT;1", rr_name="README.txt", joliet_path="/README.txt")
    data = os.urandom(payload)
    iso.add_fp(io.BytesIO(data), len(data), "/DATA.BIN;1", rr_name="data.bin", joliet_path="/data.bin")
    iso.write(str(path))
    iso.close()
    os.chmod(path, 0o644)
    return path
