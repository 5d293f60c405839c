"""Training parameters as the Trainer receives them (the pipeline's custom_config), typed and validated once."""
import dataclasses
from typing import Any, Mapping, Optional

# Fine-tuning a module whose variable names carry no block structure unfreezes this share of its variables,
# taken from the end (the layers closest to the output), per requested block.
FALLBACK_FRACTION_PER_BLOCK = 0.1
# Keys the pipeline adds to the Trainer's custom_config that are not training parameters: the user code's
# fingerprint (so a code edit re-runs the Trainer) and the backbone's identity (for the exported model's facts).
CODE_KEY = "code"
MODULE_KEY = "module"
FEATURE_LEVEL_CHOICES = ("auto", "default", "all")
CLASS_WEIGHT_CHOICES = ("balanced", "none")


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    """Every choice the Trainer makes uses only the train split (see components/trainer/stages.py)."""

    batch_size: int = 16
    cv_folds: int = 5  # stage 1: stratified folds choosing the L2 strength and the feature levels (at most:
    # fewer above 2,000 training examples, see head.CV_ROW_BUDGET)
    feature_levels: str = "auto"  # auto: cross-validation chooses; default: feature vector only; all: every level
    class_weight: str = "balanced"  # balanced: each class weighs the same in the loss, whatever its count
    dropout: float = 0.0  # before the head, in stage 2 only (stage 1 is regularised by its L2 strength)
    fine_tune_blocks: Optional[int] = 2  # None: every block
    stage2_epochs: int = 8  # at most; early stopping on the validation slice ends it sooner
    stage2_learning_rate: float = 1e-4
    stage2_patience: int = 2  # epochs without a lower validation loss before stopping
    validation_fraction: float = 0.2  # of each class's training examples, held out to judge stage 2
    min_validation_examples: int = 10  # fewer: stage 2 cannot be judged, so it is skipped
    # Stage 2 replaces stage 1 only if, on the validation slice, it fixes significantly more of stage 1's
    # predictions than it breaks: one-sided exact sign test (McNemar's exact test) at this level. 1.0 keeps any
    # stage 2 that beat stage 1's validation loss (the rule before; tests use it on toy data).
    stage2_significance: float = 0.1
    augment: bool = True
    seed: int = 0
    warmup_fraction: float = 0.1

    @classmethod
    def from_custom_config(cls, config: Mapping[str, Any]) -> "TrainingParams":
        """Raises ValueError on an unknown key (a typo would otherwise be silently ignored) or a bad value."""
        known = {f.name for f in dataclasses.fields(cls)}
        config = {k: v for k, v in config.items() if k not in (CODE_KEY, MODULE_KEY)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Unknown training parameters {unknown}; known: {sorted(known)}.")
        values = dict(config)
        if "fine_tune_blocks" in values:
            values["fine_tune_blocks"] = parse_fine_tune_blocks(values["fine_tune_blocks"])
        params = cls(**values)
        if params.feature_levels not in FEATURE_LEVEL_CHOICES:
            raise ValueError(f"feature_levels must be one of {FEATURE_LEVEL_CHOICES}, got {params.feature_levels!r}.")
        if params.class_weight not in CLASS_WEIGHT_CHOICES:
            raise ValueError(f"class_weight must be one of {CLASS_WEIGHT_CHOICES}, got {params.class_weight!r}.")
        if not 0 < params.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {params.validation_fraction}.")
        if not 0 < params.stage2_significance <= 1:
            raise ValueError(f"stage2_significance must be in (0, 1], got {params.stage2_significance}.")
        if params.cv_folds < 2:
            raise ValueError(f"cv_folds must be at least 2, got {params.cv_folds}.")
        return params

    @property
    def fine_tune_enabled(self) -> bool:
        return self.stage2_epochs > 0 and self.fine_tune_blocks != 0

    @property
    def sklearn_class_weight(self) -> Optional[str]:
        return None if self.class_weight == "none" else self.class_weight


def parse_fine_tune_blocks(value: Any) -> Optional[int]:
    """'all' -> None (every block); otherwise a non-negative block count. Raises ValueError.

    Users write the value as text (YAML, command line); the Trainer receives that text in its custom_config.
    """
    text = str(value).strip().lower()
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"fine_tune_blocks must be a whole number >= 0 or 'all', got {value!r}.")
    return count
