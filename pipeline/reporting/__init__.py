"""What a run did, read back from ML Metadata and its artifacts: the console summary (run_summary), TFMA's
results (eval_results) and the HTML report (report)."""
