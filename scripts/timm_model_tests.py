"""timm's own tests/test_models.py on psa_zoo's names (see psa_zoo/bench/timm_conformance.py)."""

import sys

from psa_zoo.bench.timm_conformance import main

if __name__ == "__main__":
    sys.exit(main())
