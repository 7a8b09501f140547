"""Model benchmark; same as ``psa-zoo bench-models`` (see ``--help``)."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-models", *sys.argv[1:]]))
