"""Whether the Evaluator can compare a candidate model with the latest blessed one (the baseline).

TFMA scores both models on the candidate's eval examples and takes the difference of their metrics. That is only
meaningful, and for the class ids only defined, when both models were trained for the same task the same way:
- the same class names with the same class ids. A baseline with fewer classes makes TFMA fail outright (a
  sparse label 3 against 3 probabilities is an error on CPU), and would do so on every later run, because the
  baseline stays the latest blessed model while nothing new is blessed;
- the same backbone module (handle and sha256) and the same input size: a deliberate change of the model's
  design starts a new line of models, which the change threshold (meant to catch regressions when retraining
  on new data) must not block;
- a baseline that has the signature the EvalConfig names (models exported by older hubtfx versions do not).

When one of these fails, the Evaluator drops the baseline and gates on the absolute threshold only; the reasons
are recorded on the blessing and shown in the run summary and report.
"""
import json
import os
from typing import List, Optional, Sequence

import tensorflow as tf

from hubtfx.components.trainer import exported_model
from hubtfx.components.trainer.exported_model import ModelFacts

# The consequence, appended wherever the reasons are shown.
CONSEQUENCE = "no comparison with the latest blessed model; only the absolute threshold applies"
# Class names of models exported before the facts file existed, written beside their head for warm starts.
LEGACY_CLASSES_FILE = os.path.join(exported_model.ASSETS_EXTRA_DIR, "hubtfx_head_classes.json")
# Custom properties of the Evaluator's ModelBlessing when it dropped the baseline: the reasons, and its URI.
BASELINE_SKIPPED_REASON = "baseline_skipped_reason"
SKIPPED_BASELINE_MODEL = "skipped_baseline_model"


def model_facts(export_dir: str) -> ModelFacts:
    """The facts of the model in `export_dir`; for an older export without a facts file, its class names from
    LEGACY_CLASSES_FILE when it has one (module and input size then stay unknown)."""
    facts = exported_model.read_facts(export_dir)
    if facts is not None:
        return facts
    classes_path = os.path.join(export_dir, LEGACY_CLASSES_FILE)
    if tf.io.gfile.exists(classes_path):
        with tf.io.gfile.GFile(classes_path) as f:
            return ModelFacts(class_names=tuple(json.load(f)["classes"]))
    return ModelFacts(class_names=())


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def class_difference(candidate: Sequence[str], baseline: Sequence[str]) -> str:
    """"" when the class ids mean the same classes, else a sentence saying how they differ."""
    if list(candidate) == list(baseline):
        return ""
    if not baseline:
        return "the latest blessed model's classes are not recorded"
    added = [n for n in candidate if n not in baseline]
    removed = [n for n in baseline if n not in candidate]
    changes = ([f"added {_names(added)}"] if added else []) + ([f"removed {_names(removed)}"] if removed else [])
    if not changes:
        changes = ["the same classes with other class ids"]
    return (f"the latest blessed model has {len(baseline)} classes ({_names(baseline)}), this one "
            f"{len(candidate)} ({_names(candidate)}): {'; '.join(changes)}")


def incomparable_reasons(candidate: ModelFacts, baseline: ModelFacts, baseline_signatures: Sequence[str],
                         eval_signature: str) -> List[str]:
    """Why the two models cannot be compared, one sentence each; empty when they can.

    baseline_signatures: the baseline SavedModel's signature names; eval_signature: the one TFMA will call.
    A fact that either model does not record (older exports) is not held against it, except the class names.
    """
    reasons = []
    if eval_signature not in baseline_signatures:
        reasons.append(f"the latest blessed model has no `{eval_signature}` signature for the Evaluator (it was "
                       f"exported by an older hubtfx; its signatures: {_names(sorted(baseline_signatures))})")
    classes = class_difference(candidate.class_names, baseline.class_names)
    if classes:
        reasons.append(classes)
    if candidate.module_sha256 and baseline.module_sha256 and candidate.module_sha256 != baseline.module_sha256:
        reasons.append(f"the latest blessed model's backbone is {baseline.module_handle} (sha256 "
                       f"{baseline.module_sha256[:12]}), this one's {candidate.module_handle} (sha256 "
                       f"{candidate.module_sha256[:12]})")
    if candidate.modality != baseline.modality:
        reasons.append(f"the latest blessed model takes {baseline.modality} inputs, this one {candidate.modality}")
    if candidate.seq_length and baseline.seq_length and candidate.seq_length != baseline.seq_length:
        reasons.append(f"the latest blessed model reads {baseline.seq_length} wordpieces per text, this one "
                       f"{candidate.seq_length}")
    if candidate.image_size and baseline.image_size and candidate.image_size != baseline.image_size:
        reasons.append(f"the latest blessed model takes {baseline.image_size[0]}x{baseline.image_size[1]} "
                       f"images, this one {candidate.image_size[0]}x{candidate.image_size[1]}")
    return reasons


def check(candidate_dir: str, baseline_dir: str, eval_signature: str) -> Optional[str]:
    """None when the SavedModels in the two folders can be compared, else the reasons as one sentence."""
    reasons = incomparable_reasons(model_facts(candidate_dir), model_facts(baseline_dir),
                                   list(exported_model.signature_inputs(baseline_dir)), eval_signature)
    return "; ".join(reasons) if reasons else None
