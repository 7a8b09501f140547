"""Hugging Face transformers integration: the optional extra ``psa_zoo[hf]`` (transformers ≥ 5, Python 3.11+).

* :class:`PsaSegConfig` / :class:`PsaForSemanticSegmentation`: a psa_zoo segmentation architecture behind
  ``AutoModelForSemanticSegmentation``, returning ``SemanticSegmenterOutput`` (logits at the input size).
* :class:`PsaPoseConfig` / :class:`PsaForPoseEstimation`: a pose architecture behind ``AutoModel`` and
  ``AutoModelForPoseEstimation``, returning :class:`PsaPoseEstimatorOutput` (heatmaps at 1/4).
* :func:`register_transformers`: make the Auto classes know these (once per process; not done at import).
* :func:`prepare_remote_code`: make ``save_pretrained`` write the defining code and an ``auto_map``, so that
  ``AutoModelFor*.from_pretrained(path, trust_remote_code=True)`` loads without psa_zoo.hf being imported.

One saved format: the configs hold psa_zoo's own ``config.json`` record and ``save_pretrained`` is
psa_zoo's (atomic folder, psa_zoo's weight keys, sha256) with transformers' fields added, so a folder
written by ``psa_zoo``'s ``save_pretrained`` loads through the Auto classes and one written here loads
with ``psa_zoo.from_pretrained``.

``import psa_zoo`` never imports transformers; only importing this subpackage does. Guide:
docs/transformers.md.
"""

from __future__ import annotations

_INSTALL_HINT = "pip install 'psa_zoo[hf]'"

try:
    import transformers
except ImportError as err:
    raise ImportError(
        f"psa_zoo.hf needs transformers >= 5.0 (Python >= 3.11), which is not installed: {_INSTALL_HINT}"
    ) from err

if int(transformers.__version__.split(".")[0]) < 5:
    raise ImportError(
        f"psa_zoo.hf needs transformers >= 5.0, found {transformers.__version__}: {_INSTALL_HINT}"
    )

from transformers import (  # noqa: E402  (after the availability check, on purpose)
    AutoConfig,
    AutoModel,
    AutoModelForPoseEstimation,
    AutoModelForSemanticSegmentation,
)

from .configuration_psa import PsaPoseConfig, PsaSegConfig  # noqa: E402
from .modeling_psa import (  # noqa: E402
    PsaForPoseEstimation,
    PsaForSemanticSegmentation,
    PsaPoseEstimatorOutput,
    PsaPreTrainedModel,
)

__all__ = [
    "PsaForPoseEstimation",
    "PsaForSemanticSegmentation",
    "PsaPoseConfig",
    "PsaPoseEstimatorOutput",
    "PsaPreTrainedModel",
    "PsaSegConfig",
    "prepare_remote_code",
    "register_transformers",
]

# The Auto class each model is saved for by the remote-code route (the key it gets in config.json's auto_map).
_REMOTE_AUTO_CLASS = {
    PsaForSemanticSegmentation: "AutoModelForSemanticSegmentation",
    PsaForPoseEstimation: "AutoModelForPoseEstimation",
}


def register_transformers() -> None:
    """Register the configs and models with transformers' Auto classes (idempotent).

    After this, ``AutoConfig`` knows ``model_type`` ``"psa_seg"`` and ``"psa_pose"``;
    ``AutoModelForSemanticSegmentation`` builds :class:`PsaForSemanticSegmentation`; ``AutoModel`` and
    ``AutoModelForPoseEstimation`` build :class:`PsaForPoseEstimation` (transformers has no other
    heatmap-pose Auto class; ``AutoModelForKeypointDetection`` is SuperPoint's task). Not run at import time,
    so importing psa_zoo.hf changes no global state of transformers.
    """
    AutoConfig.register(PsaSegConfig.model_type, PsaSegConfig, exist_ok=True)
    AutoConfig.register(PsaPoseConfig.model_type, PsaPoseConfig, exist_ok=True)
    AutoModelForSemanticSegmentation.register(PsaSegConfig, PsaForSemanticSegmentation, exist_ok=True)
    AutoModel.register(PsaPoseConfig, PsaForPoseEstimation, exist_ok=True)
    AutoModelForPoseEstimation.register(PsaPoseConfig, PsaForPoseEstimation, exist_ok=True)


def prepare_remote_code(model: PsaPreTrainedModel) -> PsaPreTrainedModel:
    """Make ``model.save_pretrained`` / ``push_to_hub`` write the code that defines the model.

    Registers the model's class and its config's class for their Auto classes
    (``register_for_auto_class``): saving then copies ``configuration_psa.py`` and ``modeling_psa.py``
    next to the weights and writes ``"auto_map"`` into config.json, e.g.
    ``{"AutoConfig": "configuration_psa.PsaSegConfig", "AutoModelForSemanticSegmentation":
    "modeling_psa.PsaForSemanticSegmentation"}``. Anyone with psa_zoo installed (the copied files
    ``import psa_zoo``) can then load it with ``AutoModelForSemanticSegmentation.from_pretrained(path,
    trust_remote_code=True)`` (pose: ``AutoModelForPoseEstimation``) and no call to
    :func:`register_transformers`.

    The two files belong to the saved folder (``overwrite=True`` replaces such a folder; psa_zoo's own
    ``from_pretrained`` reads it and ignores them). The registration is per class, as transformers keeps
    it: every model of that class saved later in this process gets the code too. Returns ``model``.
    """
    auto_class = next((name for cls, name in _REMOTE_AUTO_CLASS.items() if isinstance(model, cls)), None)
    if auto_class is None:
        raise TypeError(
            f"expected a PsaForSemanticSegmentation or PsaForPoseEstimation, got {type(model).__name__}"
        )
    type(model.config).register_for_auto_class("AutoConfig")
    type(model).register_for_auto_class(auto_class)
    return model
