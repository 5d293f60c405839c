"""The modalities hubtfx knows, by name, and how a stage finds the one it works with.

- From a module's contract (`modality_for`): ExampleGen, Transform and the Trainer, which the pipeline configures
  from the module. Contracts written before modalities existed have no `modality` and mean "image".
- From an exported model (`modality_for_model`): predict and the report, which get a model and nothing else;
  the modality is the one whose raw-input signature the model has.

Built-in modalities are imported on first use (they import TensorFlow; reading a contract must not). Tests and
extensions add their own with `register`.
"""
from __future__ import annotations

from typing import Dict, List

from hubtfx.components.modality.base import Modality
# The contract's default: what a contract written before modalities existed means.
from hubtfx.components.common.contract import DEFAULT_MODALITY

def _built_in(name: str) -> Modality:
    """A new instance of the built-in modality `name`. Imports inside the function keep reading a contract free of
    TensorFlow, and stay visible to the pipeline's code fingerprint, which follows import statements."""
    if name == "image":
        from hubtfx.components.modality.image import ImageModality  # pylint: disable=import-outside-toplevel
        return ImageModality()
    if name == "text":
        from hubtfx.components.modality.text import TextModality  # pylint: disable=import-outside-toplevel
        return TextModality()
    raise KeyError(name)


_BUILT_IN_NAMES = ("image", "text")
_instances: Dict[str, Modality] = {}


class UnknownModalityError(ValueError):
    """A contract, config or model names a modality hubtfx has no implementation of."""


def known_names() -> List[str]:
    """Built-in modalities first, then registered ones, each once, in registration order."""
    return list(dict.fromkeys([*_BUILT_IN_NAMES, *_instances]))


def register(modality: Modality, replace: bool = False) -> None:
    """Makes `modality` available under `modality.name`.

    Raises ValueError if the name is empty or taken (unless `replace`).
    """
    if not isinstance(modality, Modality) or not modality.name:
        raise ValueError(f"register takes a Modality with a name, got {modality!r}.")
    if not replace and modality.name in known_names():
        raise ValueError(f"A modality named {modality.name!r} is already registered.")
    _instances[modality.name] = modality


def unregister(name: str) -> None:
    """Removes a registered modality; a built-in one is only reset (it is imported again on next use)."""
    _instances.pop(name, None)


def modality_named(name: str) -> Modality:
    """The modality called `name` ("image", ...).

    Raises UnknownModalityError naming the known modalities when there is none of that name.
    """
    if name not in _instances:
        if name not in _BUILT_IN_NAMES:
            raise UnknownModalityError(
                f"Unknown modality {name!r}: hubtfx knows {', '.join(repr(n) for n in known_names())}. Check the "
                "`modality` of the module's hubtfx_contract.json, or use a hubtfx version that supports it.")
        _instances[name] = _built_in(name)
    return _instances[name]


def modality_for(contract) -> Modality:
    """The modality a module contract (ModuleContract) names; image for a contract without the field (written
    before modalities existed) and for None (no contract could be read: only image modules have theirs inferred).

    Raises UnknownModalityError for a modality hubtfx does not know.
    """
    return modality_named(getattr(contract, "modality", None) or DEFAULT_MODALITY)


def modality_for_model(loaded) -> Modality:
    """The modality of a loaded exported model (tf.saved_model.load): the first known modality that finds its
    raw-input signature in the model (Modality.serving_signature).

    Raises UnknownModalityError naming the model's signatures when none does.
    """
    for name in known_names():
        modality = modality_named(name)
        try:
            modality.serving_signature(loaded)
        except ValueError:
            continue
        return modality
    expected = ", ".join(f"`{modality_named(n).serving_input}` ({n})" for n in known_names())
    raise UnknownModalityError(
        f"The model has no signature on the raw inputs of a known modality ({expected}); its signatures are "
        f"{sorted(loaded.signatures)}. Was it exported by hubtfx?")


def import_built_ins() -> None:
    """Imports every built-in modality: their modules register the custom ops their Transform graphs hold
    (tensorflow_text's tokenizer ops for text), which TensorFlow needs before it can load such a graph or a model
    that embeds one. Call it in any process that loads an exported model or a Transform graph of unknown modality."""
    for name in _BUILT_IN_NAMES:
        modality_named(name)


def load_model(path: str):
    """tf.saved_model.load(path) of an exported hubtfx model, whatever its modality (see import_built_ins)."""
    import_built_ins()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.saved_model.load(path)


def default_modality() -> Modality:
    """The image modality, for callers that have neither a contract nor a model to ask."""
    return modality_named(DEFAULT_MODALITY)
