"""Running the pipeline again when new data arrives: `hubtfx retrain`, one step per cron tick (retrain)."""
