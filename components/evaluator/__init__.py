"""The Evaluator with a baseline check: TFX's Evaluator, which drops a baseline it cannot compare with."""
