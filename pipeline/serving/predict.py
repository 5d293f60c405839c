"""`hubtfx predict`: score files with the latest model pushed to a serving folder.

How a file becomes a model input is the model's modality's (hubtfx.components.modality): image files are passed
as their bytes to the `image_bytes` signature.
"""
import dataclasses
import os
from typing import Callable, Iterable, List, Optional

import tensorflow as tf

from hubtfx.components.modality import registry as modalities
from hubtfx.components.pusher import serving
from hubtfx.components.trainer import exported_model
from hubtfx.pipeline.config import ConfigError

BATCH_SIZE = 16


@dataclasses.dataclass
class Prediction:
    file: str
    class_id: Optional[int] = None
    class_name: Optional[str] = None
    probability: Optional[float] = None
    error: Optional[str] = None

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def latest_version_dir(model_base_dir: str) -> str:
    """The version TF Serving would serve (the highest number), or a ConfigError saying how to get one."""
    version_dir = serving.latest_version_dir(model_base_dir)
    if version_dir is None:
        raise ConfigError(f"No pushed model under {model_base_dir}. Run `hubtfx run` first (with the same "
                          "--output), or pass the --output folder of an earlier run.")
    return version_dir


def list_images(paths: Iterable[str]) -> List[str]:
    """Files as given, and every non-hidden file below each folder, in a stable order."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                files += [os.path.join(folder, n) for n in sorted(names) if not n.startswith(".")]
        else:
            files.append(path)
    return files


def _score(signature, modality, files: List[str], contents: List[bytes]) -> List[Prediction]:
    """The model's verdict per file: a class, or the `error` the model gave for an input it could not score."""
    outputs = signature(**modality.model_inputs(contents))
    errors = outputs[exported_model.ERROR].numpy() if exported_model.ERROR in outputs else [b""] * len(files)
    return [Prediction(file=f, error=e.decode("utf-8")) if e else
            Prediction(file=f, class_id=int(c), class_name=n.decode("utf-8"), probability=float(p[int(c)]))
            for f, c, n, p, e in zip(files, outputs[exported_model.CLASS_ID].numpy(),
                                     outputs[exported_model.CLASS_NAME].numpy(),
                                     outputs[exported_model.PROBABILITIES].numpy(), errors)]


def _score_each(signature, modality, files: List[str], contents: List[bytes]) -> List[Prediction]:
    """Scores images one at a time so one undecodable image costs only its own result (for models exported
    before the image signature had its per-image `error` output, which fail the whole batch instead)."""
    results = []
    for file, content in zip(files, contents):
        try:
            results += _score(signature, modality, [file], [content])
        except tf.errors.InvalidArgumentError as e:
            results.append(Prediction(file=file, error=f"not a decodable {modality.name} "
                                                       f"({e.message.splitlines()[0]})"))
    return results


def predict_files(model_dir: str, files: List[str],
                  progress: Callable[[int], object] = lambda done: None) -> List[Prediction]:
    """One Prediction per file, in order; unreadable or undecodable files get an `error` instead of a class.

    `progress` is called with the number of files finished since its last call (e.g. a progress bar's update).
    """
    loaded = tf.saved_model.load(model_dir)
    modality = modalities.modality_for_model(loaded)
    signature = modality.serving_signature(loaded)
    results = {}
    readable = []
    for file in files:
        content, error = None, modality.file_refusal(file)
        if error is None:
            content, error = modality.read_input(file)
        if error:
            results[file] = Prediction(file=file, error=error)
        else:
            readable.append((file, content))
    progress(len(files) - len(readable))
    for start in range(0, len(readable), BATCH_SIZE):
        batch_files, batch_contents = map(list, zip(*readable[start:start + BATCH_SIZE]))
        try:
            scored = _score(signature, modality, batch_files, batch_contents)
        except tf.errors.InvalidArgumentError:
            scored = _score_each(signature, modality, batch_files, batch_contents)
        results.update({p.file: p for p in scored})
        progress(len(scored))
    return [results[f] for f in files]
