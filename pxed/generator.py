"""pxed's systemd generator: units for tftp-hpa, the HTTP server and the socket binding.

systemd runs it early at boot and on every ``daemon-reload`` as
``pxed-generator NORMAL_DIR [EARLY_DIR LATE_DIR]``.  It reads only ``pxed.conf`` (never
state written by the daemon), uses no D-Bus or IPC, and when pxed is not configured it
writes nothing and exits 0.  A broken configuration is reported on stderr (the journal,
under systemd) and also produces nothing: the admin sees the error and pxed stays off.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pxed.config import load_config
from pxed.errors import PxedError
from pxed.units import ToolPaths, render_units, write_units

SYSFS_NET = Path("/sys/class/net")


def interface_mtu(name: str, sysfs: Path = SYSFS_NET) -> int:
    try:
        return int((sysfs / name / "mtu").read_text().strip())
    except (OSError, ValueError):
        return 1500


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) not in (1, 3):
        print("usage: pxed-generator NORMAL_DIR [EARLY_DIR LATE_DIR]", file=sys.stderr)
        return 0 if argv is None and not args else 2
    out = Path(args[0])
    try:
        config = load_config()
        if not config.configured:
            return 0
        assert config.interface is not None
        files = render_units(config, mtu=interface_mtu(config.interface), paths=ToolPaths.find(), output_dir=out)
        write_units(out, files)
    except (PxedError, ValueError, OSError) as e:
        print(f"pxed-generator: {e}; no pxed units generated", file=sys.stderr)
        return 0
    except Exception as e:  # a generator must never fail the boot; say why and write nothing more
        print(f"pxed-generator: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
