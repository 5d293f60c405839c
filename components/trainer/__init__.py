"""Trainer user code: the two-stage transfer-learning run_fn and its model, data and export helpers."""
from tensorflow.python.autograph.core import config as _autograph_config  # pylint: disable=g-direct-tensorflow-import

# AutoGraph skips `keras` but not `tf_keras`, so without this rule every first Keras fit/evaluate converts some
# 600 tf_keras internals, which measured 27 s for a 2-layer head on this 2-core machine (1 s with the rule).
if not any(getattr(rule, "_prefix", None) == "tf_keras" for rule in _autograph_config.CONVERSION_RULES):
    _autograph_config.CONVERSION_RULES = (_autograph_config.DoNotConvert("tf_keras"),) + tuple(
        _autograph_config.CONVERSION_RULES)
