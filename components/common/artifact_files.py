"""Names of the files components write into their output artifacts for other components and the pipeline's run
summary and report to read back (and the one key of the label map's JSON).

Files that only their writer's module reads back keep their name there: the exported model's facts
(`components.trainer.exported_model.FACTS_FILE`), the push record (`components.pusher.serving.PUSH_RECORD_FILE`)
and the module contract (`contract.CONTRACT_FILENAME`).
"""
# ImageFolderExampleGen, at the root of its Examples artifact. The label map is {LABEL_MAP_CLASSES_KEY: [name,
# ...]} with index = class id; the pipeline keeps a copy of the same form in its output folder (config
# label_map_path) so that class ids stay stable across runs.
LABEL_MAP_FILE = "label_map.json"
LABEL_MAP_CLASSES_KEY = "classes"
INGESTION_REPORT_FILE = "ingestion_report.json"

# The Trainer, in its ModelRun artifact: what each training stage chose and did, and which one was kept.
TRAINING_HISTORY_FILE = "training_history.json"
