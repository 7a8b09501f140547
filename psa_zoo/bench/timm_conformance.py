"""Run timm's own model tests (``tests/test_models.py`` of a timm source checkout) on psa_zoo's names.

This is what a timm user does: a conftest that imports psa_zoo, then timm's test file as it is. The
pytest plugin below keeps the tests whose ``model_name`` psa_zoo registered in timm, leaves out what
cannot run here or is not asked for (the ``pretrained=True`` tests download weights; TorchScript is
deprecated in torch 2.14), and reports a failure as *exempt* only when timm's failing line is one of
:data:`EXEMPT_CHECKS` — checks that assume a pooled ImageNet classifier, or the one documented training
property of HRNetV2-OCR. Any other failure stays a failure. ``docs/timm.md`` records a run.

Usage: ``python scripts/timm_model_tests.py PATH/TO/timm/tests/test_models.py [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

import psa_zoo  # registers psa_zoo's names in timm before timm's test file is collected

__all__ = ["EXEMPT_CHECKS", "main"]

_POOLED = (
    "a pooled classifier's output is [N, num_classes]; psa_zoo's dense models give [N, num_classes, h, w] "
    "(channels at dim 1: tests/models/test_timm_contract.py checks them)"
)
# timm's failing source line (stripped) → why psa_zoo is exempt from it
EXEMPT_CHECKS: dict[str, str] = {
    "assert outputs.shape[-1] == 42": _POOLED,
    "model.reset_classifier(0)": (
        "removing the classifier to get pooled features (the checks that follow assert a 2-D pooled "
        "output); a dense model's features come from forward_features, forward_head(pre_logits=True) or "
        "features_only=True, all checked by tests/models/test_timm_contract.py"
    ),
    "assert x.grad is not None, f'No gradient for {n}'": (
        "HRNetV2-OCR's scale-attention head is used by forward_multiscale only, not by a single-scale "
        "model(x); model.ddp_find_unused_parameters is True and the training engine builds DDP with it"
    ),
}
# timm test → why this run leaves it out
NOT_RUN = {
    "test_model_load_pretrained": "pretrained=True downloads weights; this machine has no network",
    "test_model_features_pretrained": "pretrained=True downloads weights; this machine has no network",
    "test_model_forward_torchscript": "TorchScript is deprecated in torch 2.14 (not asked for)",
    "test_model_forward_fx_torchscript": "TorchScript is deprecated in torch 2.14 (not asked for)",
}
_OCR_WITH_SCALE_ATTN = ("hrnetv2_w48_ocr", "hrnetv2_w48_ocr_psa_p", "hrnetv2_w48_ocr_psa_s")


def _model_name(item: pytest.Item) -> str | None:
    return getattr(getattr(item, "callspec", None), "params", {}).get("model_name")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = {name for name in psa_zoo.list_models() if psa_zoo.registered_in_timm(name)}
    keep, drop = [], []
    for item in items:
        base = (_model_name(item) or "").split(".")[0]  # "name.tag" → "name"
        (keep if base in ours and item.originalname not in NOT_RUN else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _failing_line(call: pytest.CallInfo) -> str | None:
    """The stripped source line of the innermost traceback entry in timm's test file."""
    if call.excinfo is None:
        return None
    for entry in reversed(call.excinfo.traceback):
        if str(entry.path).endswith("test_models.py"):
            return str(entry.statement).splitlines()[0].strip()
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    line = _failing_line(call)
    reason = EXEMPT_CHECKS.get(line or "")
    if line == "assert x.grad is not None, f'No gradient for {n}'":
        reason = reason if _model_name(item) in _OCR_WITH_SCALE_ATTN else None
    if line == "model.reset_classifier(0)":  # only psa_zoo's refusal of 0 classes, not another error
        error = call.excinfo.value if call.excinfo is not None else None
        reason = reason if isinstance(error, ValueError) and "num_classes" in str(error) else None
    if reason is not None:
        report.outcome, report.wasxfail = "skipped", f"exempt at `{line}`: {reason}"


def _summarise(junit: Path) -> dict[str, Counter]:
    import xml.etree.ElementTree as ET

    table: dict[str, Counter] = {}
    for case in ET.parse(junit).iter("testcase"):
        test = case.get("name", "").split("[")[0]
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped")
        state = "failed" if failed else "passed"
        if skipped is not None:
            exempt = "exempt" in (skipped.get("message") or "")
            state = "exempt" if exempt else "skipped"
        table.setdefault(test, Counter())[state] += 1
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_file", type=Path, help="timm's tests/test_models.py")
    parser.add_argument("--json", type=Path, help="write the per-test counts here")
    parser.add_argument("-k", default=None, help="pytest -k expression (e.g. a model name)")
    args = parser.parse_args(argv)
    if not args.test_file.is_file():
        parser.error(f"{args.test_file} is not a file: give the path of timm's tests/test_models.py")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(args.test_file, Path(tmp) / "test_models.py")  # run in place, not committed anywhere
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rx", "-p", "no:cacheprovider", "-W", "ignore"]
        cmd += ["-p", __name__, f"--junitxml={junit}", "--tb=line", str(Path(tmp) / "test_models.py")]
        cmd += ["-k", args.k] if args.k else []
        rc = subprocess.call(cmd, cwd=tmp)
        table = _summarise(junit)
    print(f"\n{'timm test':40s} {'passed':>7s} {'exempt':>7s} {'failed':>7s} {'skipped':>8s}")
    for test, counts in sorted(table.items()):
        row = [counts[s] for s in ("passed", "exempt", "failed", "skipped")]
        print(f"{test:40s} {row[0]:7d} {row[1]:7d} {row[2]:7d} {row[3]:8d}")
    for test, why in NOT_RUN.items():
        print(f"{test:40s} not run: {why}")
    if args.json:
        args.json.write_text(json.dumps({t: dict(c) for t, c in sorted(table.items())}, indent=2) + "\n")
    return rc
