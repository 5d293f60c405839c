"""What the components share: the Hub module's contract (`contract`), the examples' feature keys
(`feature_keys`) and the names of the files components write into their artifacts for others to read
(`artifact_files`).

It imports nothing from `hubtfx.pipeline` or `hubtfx.kubeflow`, so the TFX user code that runs it stays below the
orchestration layer.
"""
