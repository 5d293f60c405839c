"""ComparingEvaluator: TFX's Evaluator (same inputs, outputs and properties) that never compares the candidate
with a baseline it cannot be compared with (see executor.py and comparability.py)."""
from tfx.components.evaluator import component as tfx_evaluator_component
from tfx.dsl.components.base import executor_spec

from hubtfx.components.evaluator import executor


class ComparingEvaluator(tfx_evaluator_component.Evaluator):
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
