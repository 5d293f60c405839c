"""`hubtfx predict`: score files with the latest model pushed to a serving folder.

How a file becomes a model input is the model's modality's (hubtfx.components.modality): image files are passed
as their bytes to the `image_bytes` signature, text files (and texts given on the command line) as their text to
the `text` signature.
"""
import dataclasses
import os
from typing import Callable, Iterable, List, Optional, Sequence

import tensorflow as tf

from hubtfx.components.common.contract import TEXT_MODALITY
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


def text_label(index: int, text: str, width: int = 40) -> str:
    """How a text given on the command line is named in the results: `text N: <its first words>`."""
    words = " ".join(text.split())
    return f"text {index}: {words[:width]}{'...' if len(words) > width else ''}"


def predict_files(model_dir: str, files: List[str],
                  progress: Callable[[int], object] = lambda done: None,
                  texts: Sequence[str] = ()) -> List[Prediction]:
    """One Prediction per file, then one per text of `texts` (for a text model; named by text_label), in order;
    unreadable or undecodable inputs get an `error` instead of a class.

    `progress` is called with the number of inputs finished since its last call (e.g. a progress bar's update).
    Raises ConfigError when `texts` are given to a model that does not take texts.
    """
    loaded = modalities.load_model(model_dir)
    modality = modalities.modality_for_model(loaded)
    signature = modality.serving_signature(loaded)
    results = {}
    readable = []
    if texts and modality.name != TEXT_MODALITY:
        raise ConfigError(f"--text needs a text model; {model_dir} takes {modality.name} inputs. Point predict at "
                          "a text run's models with --output <that run's --output-dir> (or --model <model folder>), "
                          "or pass files.")
    labels = [text_label(i, t) for i, t in enumerate(texts, start=1)]
    for label, text in zip(labels, texts):
        # The rule ingestion applies to a text file (blank, not UTF-8: argv bytes that are not arrive as surrogates).
        content, error = modality.parse_file(text.encode("utf-8", "surrogateescape"))
        if error:
            results[label] = Prediction(file=label, error=error)
        else:
            readable.append((label, content))
    for file in files:
        content, error = None, modality.file_refusal(file)
        if error is None:
            content, error = modality.read_input(file)
        if error:
            results[file] = Prediction(file=file, error=error)
        else:
            readable.append((file, content))
    progress(len(files) + len(texts) - len(readable))
    for start in range(0, len(readable), BATCH_SIZE):
        batch_files, batch_contents = map(list, zip(*readable[start:start + BATCH_SIZE]))
        try:
            scored = _score(signature, modality, batch_files, batch_contents)
        except tf.errors.InvalidArgumentError:
            scored = _score_each(signature, modality, batch_files, batch_contents)
        results.update({p.file: p for p in scored})
        progress(len(scored))
    return [results[f] for f in [*labels, *files]]
