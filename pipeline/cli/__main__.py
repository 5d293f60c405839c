"""`python -m hubtfx.pipeline.cli`: the same entry point as the `hubtfx` console script."""
import sys

from hubtfx.pipeline.cli.entry import main

sys.exit(main())
