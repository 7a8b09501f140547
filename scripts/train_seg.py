"""Segmentation training (accelerate launch, torchrun or python); same as ``psa-zoo train-seg``."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-seg", *sys.argv[1:]]))
