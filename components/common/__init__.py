"""What the components share: the Hub module's contract (`contract`) and the examples' feature keys
(`feature_keys`).

It imports nothing from `hubtfx.pipeline` or `hubtfx.kubeflow`, so the TFX user code that runs it stays below the
orchestration layer.
"""
