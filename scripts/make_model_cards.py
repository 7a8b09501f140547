"""Write model_cards/<name>.<tag>.md for every pretrained tag of the registry (cards of tags that are no
longer registered are removed; model_cards/README.md is kept). A test fails when the folder is out of date.

    python scripts/make_model_cards.py [OUT_DIR]
"""

import sys
from pathlib import Path

from psa_zoo.publish.cards import write_model_cards

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "model_cards"
    written = write_model_cards(out, prune=True)
    print(f"wrote {len(written)} model cards to {out}")
