"""Saving, sharing and loading weights: safetensors folders, the real ``hf_hub_download`` against a
pre-populated cache (offline) and against a loopback HTTP server standing in for the Hub."""

import base64
import hashlib
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file

import psa_zoo
from tests.conftest import REPO_ROOT

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def _small(name: str = "hrnet_w18_psa_p", **kwargs):
    torch.manual_seed(0)
    return psa_zoo.create_model(name, **kwargs).eval()


def _weights_file(model, path: Path) -> tuple[Path, str]:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


# --- save_pretrained / from_pretrained -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("hrnet_w18_psa_p", {"num_classes": 5}, (1, 3, 64, 48)),
        ("deeplabv3plus_mbv2_psa", {"output_stride": 8}, (1, 3, 65, 49)),
        ("simplebaseline_r50", {"attn": "cbam"}, (1, 3, 64, 64)),
    ],
)
def test_save_and_from_pretrained_round_trip(tmp_path, name, kwargs, shape):
    model = _small(name, **kwargs)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == name
    assert "pretrained_backbone" not in json.dumps(config)  # reloading never re-downloads a backbone
    reloaded = psa_zoo.from_pretrained(tmp_path)
    assert type(reloaded) is type(model) and not reloaded.training
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)


def test_models_built_from_a_spec_round_trip(tmp_path):
    spec = psa_zoo.models.backbones.hrnet_spec((8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1))
    model = psa_zoo.HRNetPose(spec=spec, num_classes=3, attn="psa_s").eval()
    model.save_pretrained(tmp_path)
    reloaded = psa_zoo.from_pretrained(tmp_path)
    x = torch.randn(1, 3, 64, 48)
    torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)


def test_from_pretrained_with_other_num_classes_keeps_everything_but_the_head(tmp_path, caplog):
    model = _small("hrnet_w18", num_classes=5)
    model.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="psa_zoo"):
        reloaded = psa_zoo.from_pretrained(tmp_path, num_classes=17)
    assert reloaded.num_classes == 17
    assert "final_layer.weight" in caplog.text and "17 outputs, the checkpoint 5" in caplog.text
    torch.testing.assert_close(reloaded.conv1.weight, model.conv1.weight)


def test_callable_attention_cannot_be_saved(tmp_path):
    model = psa_zoo.HRNetPose(spec="w18", attn=psa_zoo.layers.PsaP)
    with pytest.raises(ValueError, match=r"cannot be saved in config.json"):
        model.save_pretrained(tmp_path)


def test_missing_files_and_foreign_keys_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.json is missing"):
        psa_zoo.from_pretrained(tmp_path)
    model = _small("hrnet_w18")
    model.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["extra.weight"] = torch.zeros(1)
    del state["conv1.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"1 missing \['conv1.weight'\], 1 unexpected \['extra.weight'\]"):
        psa_zoo.from_pretrained(tmp_path)


def test_corrupt_weights_file_is_refused(tmp_path):
    _small("hrnet_w18").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        psa_zoo.from_pretrained(tmp_path)


def test_shared_storage_is_refused(tmp_path):
    model = _small("hrnet_w18")
    model.final_layer.bias = torch.nn.Parameter(model.conv1.weight.detach().view(-1)[:17])  # shares storage
    with pytest.raises(ValueError, match="shares storage"):
        model.save_pretrained(tmp_path)


# --- pretrained=True: registry tags and overrides ------------------------------------------------------
def test_convertible_and_unreleased_tags_say_what_to_do():
    with pytest.raises(ValueError, match=r"psa-zoo convert CHECKPOINT --format hrnet-pose"):
        psa_zoo.create_model("hrnet_w32.coco_256x192", pretrained=True, device="meta")
    with pytest.raises(ValueError, match=r"not released.*never released"):
        psa_zoo.create_model("hrnet_w48_psa_p.udp_coco_384x288", pretrained=True, device="meta")
    with pytest.raises(ValueError, match=r"unknown tag 'coco' for 'hrnet_w32'; available tags: coco_256x192"):
        psa_zoo.create_model("hrnet_w32.coco", pretrained=True)


def test_local_file_override_and_checksum(tmp_path):
    source = _small("hrnet_w18")
    path, sha = _weights_file(source, tmp_path / "w.safetensors")
    model = psa_zoo.create_model("hrnet_w18", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    torch.testing.assert_close(model.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])
    overlay = {"file": str(path), "sha256": "0" * 64}
    with pytest.raises(ValueError, match=r"checksum mismatch.*was not used"):
        psa_zoo.create_model("hrnet_w18", pretrained=True, pretrained_cfg_overlay=overlay)
    with pytest.raises(ValueError, match=r"unknown fields \['weights'\]"):
        psa_zoo.create_model("hrnet_w18", pretrained=True, pretrained_cfg_overlay={"weights": "x"})
    checked = psa_zoo.create_model(
        "hrnet_w18", pretrained=True, pretrained_cfg_overlay={"file": str(path), "sha256": sha}
    )
    torch.testing.assert_close(checked.conv1.weight, source.conv1.weight)


def _populate_cache(cache: Path, repo_id: str, commit: str, files: dict[str, bytes]) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_cache_offline_loading_pinning_and_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    source = _small("hrnet_w18")
    path, sha = _weights_file(source, tmp_path / "w.safetensors")
    cache = tmp_path / "cache"
    _populate_cache(cache, "someone/hrnet-w18", COMMIT_A, {"model.safetensors": path.read_bytes()})
    overlay = {"hf_hub_id": "someone/hrnet-w18", "sha256": sha}
    model = psa_zoo.create_model(
        "hrnet_w18", pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=cache
    )
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    pinned = {**overlay, "hf_hub_revision": COMMIT_A}
    psa_zoo.create_model("hrnet_w18", pretrained=True, pretrained_cfg_overlay=pinned, cache_dir=cache)
    with pytest.raises(FileNotFoundError, match=r"not in the Hugging Face cache.*offline"):
        psa_zoo.create_model(
            "hrnet_w18",
            pretrained=True,
            pretrained_cfg_overlay={"hf_hub_id": "someone/other"},
            cache_dir=cache,
        )
    wrong = {**overlay, "sha256": "f" * 64}
    with pytest.raises(ValueError, match="checksum mismatch"):
        psa_zoo.create_model("hrnet_w18", pretrained=True, pretrained_cfg_overlay=wrong, cache_dir=cache)


def test_from_pretrained_reads_a_hub_repo_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = _small("hrnet_w18_psa_p", num_classes=4)
    folder = model.save_pretrained(tmp_path / "folder")
    cache = tmp_path / "cache"
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    _populate_cache(cache, "someone/psa", COMMIT_B, files)
    reloaded = psa_zoo.from_pretrained("someone/psa", cache_dir=cache)
    x = torch.randn(1, 3, 64, 48)
    torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        psa_zoo.from_pretrained("someone/psa", cache_dir=cache, revision="c" * 40)


# --- a loopback server as HF_ENDPOINT ------------------------------------------------------------------
class _FakeHub(http.server.ThreadingHTTPServer):
    """Answers ``HEAD``/``GET /{org}/{repo}/resolve/{revision}/{file}`` like the Hub, from memory."""

    def __init__(self, files: dict[tuple[str, str, str], bytes], refs: dict[tuple[str, str], str]):
        super().__init__(("127.0.0.1", 0), _FakeHubHandler)
        self.files, self.refs, self.gets, self.commits = files, refs, [], 0


class _FakeHubHandler(http.server.BaseHTTPRequestHandler):
    server: _FakeHub

    def log_message(self, *args):  # keep the test output clean
        pass

    def _resolve(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return None, None
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        commit = self.server.refs.get((repo, revision), revision)
        return commit, self.server.files.get((repo, commit, filename))

    def _answer(self, with_body: bool) -> None:
        commit, data = self._resolve()
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if commit else "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.server.gets.append(self.path)
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(with_body=False)

    def do_GET(self):
        self._answer(with_body=True)

    def _json(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        """The Hub's metadata check, repo creation, pre-upload and commit API (regular, inline files)."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = self.path.split("?")[0]
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if path == "/api/validate-yaml":  # upload_folder has the README's metadata checked first
            self._json({"errors": [], "warnings": []})
        elif path == "/api/repos/create":
            request = json.loads(body)
            self._json({"url": f"{base}/{request.get('organization') or 'user'}/{request['name']}"})
        elif "/preupload/" in path:
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            self._json({"files": modes})
        elif "/commit/" in path:
            repo = "/".join(path.split("/")[3:5])
            self.server.commits += 1
            commit = f"{self.server.commits:040x}"
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    content = base64.b64decode(item["value"]["content"])
                    self.server.files[(repo, commit, item["value"]["path"])] = content
            self.server.refs[(repo, "main")] = commit
            self._json({"commitUrl": f"{base}/{repo}/commit/{commit}", "commitOid": commit})
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


def _run_client(hub: _FakeHub, tmp_path: Path, script: str, *args: str) -> dict:
    """Serve ``hub`` on loopback and run ``script`` in a fresh interpreter whose huggingface_hub uses it as
    HF_ENDPOINT (read at import) with an empty cache; return the JSON the script prints last."""
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_address[1]}",
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",  # uploads as regular files, which the fake understands
        "HF_HUB_ETAG_TIMEOUT": "5",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("HF_HUB_OFFLINE", None)
    try:
        run = subprocess.run(
            [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        hub.shutdown()
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


_CLIENT = r"""
import json, sys, torch, psa_zoo
from safetensors.torch import load_file
sha, good_commit, expected_file = sys.argv[1], sys.argv[2], sys.argv[3]
expected = load_file(expected_file)["conv1.weight"]
results = {}
def attempt(label, **overlay):
    try:
        model = psa_zoo.create_model("hrnet_w18", pretrained=True, pretrained_cfg_overlay=overlay)
        results[label] = "ok" if torch.equal(model.conv1.weight, expected) else "wrong weights"
    except Exception as error:
        results[label] = f"{type(error).__name__}: {error}"
attempt("first", hf_hub_id="org/good", sha256=sha)
attempt("again", hf_hub_id="org/good", sha256=sha)
attempt("pinned", hf_hub_id="org/good", hf_hub_revision=good_commit, sha256=sha)
attempt("missing", hf_hub_id="org/good", filename="other.safetensors")
attempt("corrupted", hf_hub_id="org/bad", sha256=sha)
print(json.dumps(results))
"""


def test_download_through_a_loopback_hub(tmp_path):
    source = _small("hrnet_w18")
    path, sha = _weights_file(source, tmp_path / "w.safetensors")
    good = path.read_bytes()
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # one flipped bit in the last tensor: still a valid file, wrong content
    hub = _FakeHub(
        files={
            ("org/good", COMMIT_A, "model.safetensors"): good,
            ("org/bad", COMMIT_B, "model.safetensors"): bytes(bad),
        },
        refs={("org/good", "main"): COMMIT_A, ("org/bad", "main"): COMMIT_B},
    )
    results = _run_client(hub, tmp_path, _CLIENT, sha, COMMIT_A, str(path))
    assert results["first"] == "ok"
    assert results["again"] == "ok"
    assert results["pinned"] == "ok"
    assert (
        results["missing"].startswith("FileNotFoundError")
        and "has no file other.safetensors" in results["missing"]
    )
    assert results["corrupted"].startswith("ValueError") and "checksum mismatch" in results["corrupted"]
    good_gets = [p for p in hub.gets if p.startswith("/org/good/")]
    assert len(good_gets) == 1  # downloaded once, then served from the cache


_PUSH_CLIENT = r"""
import json, sys, torch, psa_zoo
torch.manual_seed(0)
model = psa_zoo.create_model("hrnet_w18_psa_p", num_classes=3).eval()
url = model.push_to_hub("someone/pushed", token="test-token", model_card="# card\\n")
reloaded = psa_zoo.from_pretrained("someone/pushed")
x = torch.randn(1, 3, 64, 48)
print(json.dumps({"url": url, "equal": torch.equal(model(x), reloaded(x)), "classes": reloaded.num_classes}))
"""


def test_push_to_hub_then_from_pretrained_through_a_loopback_hub(tmp_path):
    hub = _FakeHub(files={}, refs={})
    result = _run_client(hub, tmp_path, _PUSH_CLIENT)
    assert result["equal"] and result["classes"] == 3
    assert "/someone/pushed/commit/" in result["url"]
    uploaded = {path for (repo, _, path) in hub.files if repo == "someone/pushed"}
    assert uploaded == {"config.json", "model.safetensors", "README.md"}
