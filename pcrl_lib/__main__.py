"""``python -m pcrl_lib``: the command line (see :mod:`pcrl_lib.cli`)."""

from pcrl_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
