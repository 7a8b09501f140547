"""The Python examples of README.md run as written (lines that download weights or stand for the user's
own data are left out)."""

import re

from tests.conftest import REPO_ROOT

SKIPPED_MARKERS = ("pretrained_backbone=True",)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write files
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    code = "\n".join(
        line for block in blocks for line in block.splitlines() if not any(m in line for m in SKIPPED_MARKERS)
    )
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert tuple(namespace["heatmaps"].shape) == (1, 17, 64, 48)
    assert tuple(namespace["logits"].shape) == (1, 21, 333, 500)
    assert tuple(namespace["pred"].shape) == (1, 19, 64, 128)
    assert tuple(namespace["y"].shape) == (2, 256, 64, 48)
    assert tuple(namespace["out"].heatmaps.shape) == (1, 5, 64, 48)
    assert namespace["hub_model"].num_classes == 4
    assert namespace["reloaded"].metadata.keypoints.num_keypoints == 17
    assert namespace["seg"].num_classes == 4
    first = namespace["first"]
    assert first.channel_gate.shape[0] == 1 and first.spatial_gate.shape[:2] == (1, 1)
