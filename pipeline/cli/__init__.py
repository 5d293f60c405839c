"""The `hubtfx` command line: `entry` is the console script, `commands` builds the parser and runs a command; the
cluster commands (`compile`, `schedule`, `execute-spec`) live in hubtfx.kubeflow.cli.

Keep this file free of imports: it runs before `entry` can quiet TensorFlow (see entry.py).
"""
