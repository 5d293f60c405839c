"""Using a pushed model from the command line: `hubtfx predict` (predict)."""
