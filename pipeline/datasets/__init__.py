"""The synthetic sample dataset that `hubtfx run` trains on when no data is given (also used by tests and
benchmarks)."""
