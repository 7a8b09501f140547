"""Pose training (accelerate launch / torchrun / python); same as ``psa-zoo train-pose`` (see ``--help``)."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-pose", *sys.argv[1:]]))
