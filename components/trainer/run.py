"""Trainer entry point (`run_fn`), referenced by dotted path from the pipeline, and the two-stage recipe."""
import dataclasses
import json
import logging
import os
import time
from typing import List, Optional

import numpy as np

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx import v1 as tfx

from hubtfx.components.common import artifact_files, contract as module_contract
from hubtfx.components.modality import registry as modalities
from hubtfx.components.trainer import data, export, exported_model, model, stages
from hubtfx.components.trainer import head as head_lib
from hubtfx.components.trainer.params import TrainingParams


def read_class_names(train_file_patterns: List[str]) -> List[str]:
    """Class names from the label maps ImageFolderExampleGen writes beside its splits (index = class id).

    With a window of spans there is one Examples artifact per span. The persistent label map only appends
    classes, so every span's map is a prefix of the newest, longest one, which covers all their ids.
    """
    maps = []
    for pattern in train_file_patterns:
        examples_dir = os.path.dirname(os.path.dirname(pattern))
        with tf.io.gfile.GFile(os.path.join(examples_dir, artifact_files.LABEL_MAP_FILE)) as f:
            maps.append(list(json.load(f)[artifact_files.LABEL_MAP_CLASSES_KEY]))
    longest = max(maps, key=len)
    inconsistent = [m for m in maps if longest[:len(m)] != m]
    if inconsistent:
        raise ValueError(f"The spans' class ids disagree ({inconsistent[0]} vs {longest}): the spans were ingested "
                         "with different label maps. Train on a window of spans ingested with the same label map.")
    return longest


def module_dir(base_model: str) -> str:
    """The imported Hub module's folder: TFX appends Model artifacts' 'Format-Serving' to the imported URI."""
    if tf.io.gfile.exists(os.path.join(base_model, "saved_model.pb")):
        return base_model
    return os.path.dirname(base_model.rstrip("/"))


def check_transform_matches_module(tft_output: tft.TFTransformOutput, module_path: str):
    """The module's contract (None when it cannot be read: then the config is trusted, with a warning); fails before
    training, naming both, when Transform does not produce what the module expects (Modality.check_transformed)."""
    try:
        expected = module_contract.read_contract(module_path)
    except module_contract.ContractError as e:
        logging.warning("Cannot check Transform's output against the module (%s); trusting the config.", e)
        return None
    problem = modalities.modality_for(expected).check_transformed(tft_output.transformed_feature_spec(), expected)
    if problem:
        raise ValueError(f"{problem} (module {module_path}).")
    return expected


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across several visible GPUs (e.g. a Vertex/Kubeflow GPU node); the default otherwise."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        logging.info("Training on %d GPUs with MirroredStrategy.", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains stage 1 (linear head on cached features) and stage 2 (fine-tuning), keeps the better, exports.

    Only the train split is read; fn_args.eval_files are left to the Evaluator.
    """
    params = TrainingParams.from_custom_config(fn_args.custom_config or {})
    make_deterministic(params.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    module_path = module_dir(fn_args.base_model)
    contract = check_transform_matches_module(tft_output, module_path)
    modality = modalities.modality_for(contract)
    class_names = read_class_names(fn_args.train_files)
    logging.info("Training a %d-class head on %s (%s)", len(class_names), module_path, ", ".join(class_names))
    # In file order, unshuffled: the validation slice is chosen by row, and stage 2 shuffles after decoding.
    train = data.transformed_dataset(fn_args.train_files, fn_args.data_accessor, tft_output, params.batch_size,
                                     modality)
    with distribution_strategy().scope():
        outcome = train_both_stages(train, module_path, len(class_names), params, fn_args.model_run_dir,
                                    available_levels=contract.feature_levels if contract else (), modality=modality)
    write_history(fn_args.model_run_dir, outcome, class_names, module_path)
    module = (fn_args.custom_config or {}).get(exported_model.MODULE_CONFIG_KEY) or {}
    export.export_serving_model(outcome.classifier, tft_output, class_names, fn_args.serving_model_dir,
                                module_handle=module.get("handle", ""), module_sha256=module.get("sha256", ""),
                                modality=modality, temperature=outcome.temperature)


def make_deterministic(seed: int) -> None:
    """Seeds Python, NumPy and TF, and turns on TF's op determinism: the same data, config and seed give the same
    model. Measured cost on 2 CPU cores: see README "Training, in two stages"."""
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass
class TrainingOutcome:
    """The model to export and what each stage did (see stages.StageResult and head.HeadFit).

    temperature: the chosen classifier's calibration, served probabilities = softmax(temperature * logits):
    stage 1's from its cross-validation (HeadFit.temperature), stage 2's fitted on the validation slice it was
    judged on (head.fit_temperature).
    """

    classifier: tf_keras.Model
    stage1_classifier: tf_keras.Model
    head_fit: head_lib.HeadFit
    stages: List[stages.StageResult]
    chosen: str
    temperature: float
    # Stage 2's best epoch when it beat stage 1's validation loss but failed the sign test (benchmarks score it).
    stage2_candidate: Optional[tf_keras.Model] = None


def train_both_stages(train: tf.data.Dataset, module_path: str, num_classes: int,
                      params: TrainingParams, log_dir: str, available_levels=(), modality=None) -> TrainingOutcome:
    """Stage 1, then (if enabled and judgeable) stage 2; returns the classifier to export.

    train: (model inputs, labels int64 [b]) batches in a fixed order (read twice); the model inputs are images
    float32 [b, h, w, 3] or a dict of text encoder inputs (Modality.model_input), and the classifier takes the
    same. available_levels: the module's feature levels (ModuleContract.feature_levels); params.feature_levels
    says which level sets stage 1's cross-validation may choose from. modality: the module's Modality, whose
    backbone_input the backbone is called with and whose augmentation stage 2 uses (image when None).
    """
    modality = modality or modalities.default_modality()
    input_spec = train.element_spec[0]
    started = time.perf_counter()
    candidates = level_candidates(available_levels, params.feature_levels)
    every_level = tuple(dict.fromkeys(name for levels in candidates for name in levels))
    extract = stages.feature_extractor(model.frozen_backbone(module_path, every_level), input_spec,
                                       modality.backbone_input, every_level)
    features = stages.extract_features(train, extract)
    fit = head_lib.fit_head(features, num_classes, candidates, params.cv_folds, params.sklearn_class_weight,
                            params.seed)
    levels = "+".join(fit.levels)
    stage1 = stages.StageResult("stage1", train_examples=len(features), outcome=(
        f"levels {levels}, C {fit.c:.3g} (temperature {fit.temperature:.3g}) chosen by {fit.folds}-fold "
        f"cross-validation (accuracy {fit.cv_accuracy:.3f})" if fit.folds else
        f"levels {levels}, C {fit.c:g} (too few examples per class to cross-validate)"),
        seconds=time.perf_counter() - started)
    stage1_classifier = _classifier(model.frozen_backbone(module_path, fit.levels), fit, num_classes,
                                    params.dropout, input_spec, modality)
    logging.info("Stage 1: %s", stage1.outcome)
    if not params.fine_tune_enabled:
        stage1.outcome += "; stage 2 is off (fine_tune_blocks 0 or stage2_epochs 0)"
        return TrainingOutcome(stage1_classifier, stage1_classifier, fit, [stage1], "stage1", fit.temperature)

    held_out = stages.validation_rows(features.labels, params.validation_fraction, params.seed)
    if held_out.sum() < params.min_validation_examples:
        skipped = stages.StageResult("stage2", outcome=(
            f"skipped: the validation slice would hold {int(held_out.sum())} examples, fewer than "
            f"{params.min_validation_examples}, too few to tell whether fine-tuning helps; add training examples"))
        logging.info("Stage 2 %s.", skipped.outcome)
        return TrainingOutcome(stage1_classifier, stage1_classifier, fit, [stage1, skipped], "stage1",
                               fit.temperature)

    stage2_started = time.perf_counter()
    fitting_rows, validation_rows = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    fitting_fit = head_lib.fit_head(features, num_classes, candidates, params.cv_folds,
                                    params.sklearn_class_weight, params.seed, fixed=fit, rows=fitting_rows)
    validation_labels = features.labels[validation_rows]
    stage1_logits = fitting_fit.logits(features, validation_rows)
    reference = stages.softmax_metrics(stage1_logits, validation_labels)
    stage1.validation_loss, stage1.validation_accuracy = reference["loss"], reference["accuracy"]
    stage1.validation_examples = len(validation_rows)
    stage1_errors = int(np.sum(stage1_logits.argmax(axis=1) != validation_labels))
    if not stages.SignTest.could_reach(stage1_errors, params.stage2_significance):
        skipped = stages.StageResult("stage2", validation_examples=len(validation_rows), outcome=(
            f"skipped: stage 1 misclassifies {stage1_errors} of the {len(validation_rows)} validation examples, so "
            f"even a stage 2 that fixed all of them could not show a gain at stage2_significance "
            f"{params.stage2_significance:g}; add training examples"))
        logging.info("Stage 2 %s.", skipped.outcome)
        return TrainingOutcome(stage1_classifier, stage1_classifier, fit, [stage1, skipped], "stage1",
                               fit.temperature)
    backbone = model.fine_tunable_backbone(module_path, params.fine_tune_blocks, fit.levels)
    # Stage 2 minimises stage 1's objective (same L2 on the head) while the top blocks move: without it, the head
    # drifts from the cross-validated optimum towards over-confidence on the fitting slice.
    tuned = _classifier(backbone, fitting_fit, num_classes, params.dropout, input_spec, modality,
                        fitting_fit.l2_per_example(len(fitting_rows)))
    grouping = stages.class_grouping(features.labels[fitting_rows])
    if grouping > stages.GROUPED_BY_CLASS:
        logging.warning("Stage 2: the training examples arrive grouped by class (class_grouping %.2f), which its "
                        "shuffle buffer of a few hundred examples cannot mix: fine-tuning would see one class at a "
                        "time and is likely to be rolled back. Write the train split in mixed order (hubtfx's own "
                        "ExampleGen does for folders and tables; shuffle examples made elsewhere).", grouping)
    fitting, validation = stages.split_images(train, held_out, params.batch_size, params.seed)
    stage2 = stages.fine_tune(fitting, validation, tuned, backbone.selected_variable_names, params,
                              -(-len(fitting_rows) // params.batch_size), reference, log_dir, modality=modality)
    stage2.train_examples, stage2.validation_examples = len(fitting_rows), len(validation_rows)
    if stage2.best_epoch:
        stage2_logits = np.concatenate([tuned(images, training=False).numpy() for images, _ in validation])
        stages.judge_by_sign_test(stage2, stage1_logits.argmax(axis=1), stage2_logits.argmax(axis=1),
                                  validation_labels, params.stage2_significance)
    stage2.seconds = time.perf_counter() - stage2_started
    logging.info("Stage 2 %s.", stage2.outcome)
    if stage2.best_epoch:
        temperature, _ = head_lib.fit_temperature(stage2_logits, validation_labels)
        stage2.outcome += f"; served with temperature {temperature:.3g} (fitted on the validation slice)"
        return TrainingOutcome(tuned, stage1_classifier, fit, [stage1, stage2], "stage2", temperature)
    return TrainingOutcome(stage1_classifier, stage1_classifier, fit, [stage1, stage2], "stage1", fit.temperature,
                           stage2_candidate=tuned if stage2.sign_test else None)


def level_candidates(available, choice: str):
    """The level sets stage 1 may choose from, per params.feature_levels (auto, default or all)."""
    candidates = head_lib.level_candidates(available)
    if choice == "default":
        return candidates[:1]
    if choice == "all":
        return candidates[-1:]
    return candidates


def _classifier(backbone, fit: head_lib.HeadFit, num_classes: int, dropout: float, input_spec, modality,
                kernel_l2: float = 0.0) -> tf_keras.Model:
    head = model.build_head(num_classes, dropout, fit.mean, fit.std, kernel_l2)
    model.set_head_weights(head, fit.kernel, fit.bias)
    return model.build_classifier(backbone, head, input_spec, fit.levels, modality.backbone_input)


def write_history(model_run_dir: str, outcome: TrainingOutcome, class_names, module_path) -> None:
    """A small JSON of the choices made, both stages' curves and validation metrics, for the summary and report
    (TensorBoard has the rest)."""
    payload = {
        "stages": {r.name: {"history": r.history, "validation_loss": r.validation_loss,
                            "validation_accuracy": r.validation_accuracy, "outcome": r.outcome,
                            "train_examples": r.train_examples, "validation_examples": r.validation_examples,
                            "best_epoch": r.best_epoch, "seconds": round(r.seconds, 3),
                            "sign_test": dataclasses.asdict(r.sign_test) if r.sign_test else None,
                            "unfrozen_variables": r.unfrozen_variables}
                   for r in outcome.stages},
        "stage1_head": outcome.head_fit.summary(),
        "chosen_stage": outcome.chosen,
        "temperature": outcome.temperature,
        "class_names": list(class_names),
        "module": module_path,
    }
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, artifact_files.TRAINING_HISTORY_FILE), "w") as f:
        json.dump(payload, f, indent=2)
