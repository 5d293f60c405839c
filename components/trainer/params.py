"""Training parameters as the Trainer receives them (the pipeline's custom_config), typed and validated once."""
import dataclasses
from typing import Any, Mapping, Optional

# Fine-tuning a module whose variable names carry no block structure unfreezes this share of its variables,
# taken from the end (the layers closest to the output), per requested block.
FALLBACK_FRACTION_PER_BLOCK = 0.1


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    batch_size: int = 16
    dropout: float = 0.2
    stage1_epochs: int = 30
    stage1_learning_rate: float = 1e-3
    early_stopping_patience: int = 5
    fine_tune_blocks: Optional[int] = 2  # None: every block
    stage2_epochs: int = 2
    stage2_learning_rate: float = 1e-4
    augment: bool = True
    seed: int = 0
    warmup_fraction: float = 0.1
    warm_start_from: str = ""  # a pushed model folder whose head seeds stage 1; empty: train from scratch

    @classmethod
    def from_custom_config(cls, config: Mapping[str, Any]) -> "TrainingParams":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in known}
        blocks = str(values.get("fine_tune_blocks", cls.fine_tune_blocks)).strip().lower()
        values["fine_tune_blocks"] = None if blocks == "all" else int(blocks)
        return cls(**values)

    @property
    def fine_tune_enabled(self) -> bool:
        return self.stage2_epochs > 0 and self.fine_tune_blocks != 0
