"""COCO keypoint evaluation; same as ``psa-zoo eval-pose`` (see ``--help``)."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval-pose", *sys.argv[1:]]))
