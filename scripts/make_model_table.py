"""Write docs/models.md: parameters and FLOPs of every registered model next to the paper's figures."""

import sys
from pathlib import Path

from psa_zoo.bench.fidelity import fidelity_rows, render_markdown

if __name__ == "__main__":
    out = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "models.md"
    )
    out.write_text(render_markdown(fidelity_rows()))
    print(f"wrote {out}")
