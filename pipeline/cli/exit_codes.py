"""The `hubtfx` command's exit codes, shared by every sub-command.

0 success (for `run`: a model was pushed or is already served), 1 unexpected failure, 2 bad usage,
configuration or data, including data anomalies that stopped a run before training, a diverged training loss
(lower the learning rate) and an output folder that is unwritable or in use by another run (the message says what
to fix), 3 `run`/`retrain` trained a model that was not blessed, so serving is unchanged. `retrain` only: 0 also
means no new span, 4 a new model was pushed.
"""
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_BLESSED, EXIT_PUSHED = 0, 1, 2, 3, 4
