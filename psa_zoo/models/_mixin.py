"""What every psa_zoo model class shares: it records its constructor arguments (so a saved model can be
rebuilt) and offers ``save_pretrained`` / ``push_to_hub``."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path


def to_json_value(value, name: str = "argument"):
    """A constructor argument in JSON form: spec objects through their ``to_dict``, tuples as lists.
    Callables (an attention constructor passed as a function) cannot be written: ``ValueError``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [to_json_value(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v, f"{name}[{k!r}]") for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return to_json_value(dataclasses.asdict(value), name)
    raise ValueError(
        f"{name}={value!r} cannot be saved in config.json; pass a registered name or plain values instead"
    )


class PsaModelMixin:
    """Records ``init_args`` (the constructor's bound arguments, defaults included) after construction,
    and adds ``save_pretrained`` / ``push_to_hub``."""

    init_args: dict

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        original = cls.__init__
        signature = inspect.signature(original)

        @functools.wraps(original)
        def __init__(self, *args, **kw):
            original(self, *args, **kw)
            bound = signature.bind(self, *args, **kw)
            bound.apply_defaults()
            # the outermost class's wrapper runs last, so a subclass's arguments win
            self.init_args = {k: v for k, v in bound.arguments.items() if k != "self"}

        cls.__init__ = __init__

    def save_pretrained(self, save_directory: str | Path, model_card: str | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` (and ``README.md`` when ``model_card`` is given)
        to ``save_directory``; ``psa_zoo.from_pretrained(save_directory)`` rebuilds the model."""
        from ._hub import save_pretrained

        return save_pretrained(self, save_directory, model_card=model_card)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the saved model to the Hub repository ``repo_id`` (see ``psa_zoo.models.push_to_hub``)."""
        from ._hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
