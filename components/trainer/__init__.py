"""Trainer user code: the two-stage transfer-learning run_fn and its model, data and export helpers.

This package's __init__ imports nothing: `hubtfx.pipeline.config` reads `params` from here, and the CLI's
`--help` must not wait for TensorFlow (about 8 CPU seconds). The AutoGraph rule training needs is added when
`model` is imported (autograph_rules).
"""
