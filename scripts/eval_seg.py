"""mIoU evaluation; same as ``psa-zoo eval-seg`` (see ``--help``)."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval-seg", *sys.argv[1:]]))
