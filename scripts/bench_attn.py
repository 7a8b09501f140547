"""Attention-block benchmark; same as ``psa-zoo bench-attn`` (see ``--help``)."""

import sys

from psa_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-attn", *sys.argv[1:]]))
