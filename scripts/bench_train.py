"""Training benchmark; same as ``psa-zoo bench-train`` (see ``--help``)."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-train", *sys.argv[1:]]))
