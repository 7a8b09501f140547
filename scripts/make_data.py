"""The embedded default dataset; same as ``psa-zoo make-data`` (see ``--help``)."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-data", *sys.argv[1:]]))
