"""`python -m pxed` runs the daemon."""

from pxed.daemon import main

if __name__ == "__main__":
    raise SystemExit(main())
