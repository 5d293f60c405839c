"""`hubtfx compile` and `hubtfx schedule`: the cluster commands, added to the main parser by
hubtfx.pipeline.cli.commands (which imports this module, so this one takes only the flags and exit codes)."""
import argparse
import json
import os
import tempfile

from hubtfx.pipeline.cli import flags
from hubtfx.pipeline.cli.exit_codes import EXIT_OK

# Imported lazily by the handlers: TFX and the cloud clients take seconds to import, `hubtfx run` needs neither.
_TARGETS = ("vertex", "kubeflow")


def cmd_compile(args: argparse.Namespace) -> int:
    config = flags.config_from_args(args)  # First: a bad config is refused in a second, before TFX loads.
    from hubtfx.kubeflow import runner  # pylint: disable=import-outside-toplevel
    spec = runner.compile_to_file(config, args.target, args.output)
    print(describe(spec, args.output))
    return EXIT_OK


def describe(spec, path: str) -> str:
    """One line per fact a reviewer checks before uploading the spec."""
    executors = spec["deploymentSpec"]["executors"]
    images = sorted({e["container"]["image"] for e in executors.values() if "container" in e})
    trainer = executors["Trainer_executor"]["container"].get("resources", {})
    gpu = trainer.get("accelerator")
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    return "\n".join([
        f"Wrote {path}",
        f"  steps: {len(spec['root']['dag']['tasks'])}, image: {', '.join(images)}",
        f"  Trainer: {trainer.get('cpuLimit')} vCPU, {trainer.get('memoryLimit')} GB, "
        + (f"{gpu['count']} x {gpu['type']}" if gpu else "no GPU"),
        f"  pipeline root: {spec['defaultPipelineRoot']}",
        f"  runtime parameters: {', '.join(sorted(parameters))}",
    ])


def cmd_schedule(args: argparse.Namespace) -> int:
    from hubtfx.pipeline import platform_names  # pylint: disable=import-outside-toplevel
    config = flags.config_from_args(args)  # First: a bad config is refused in a second, before TFX loads.
    display_name = args.display_name if args.display_name is not None else f"{config.pipeline_name}-schedule"
    platform_names.check_schedule(args.target, display_name, args.service_account, args.experiment)
    from hubtfx.kubeflow import runner, schedule  # pylint: disable=import-outside-toplevel
    schedule.check_cron(args.cron)
    with tempfile.TemporaryDirectory(prefix="hubtfx-schedule-") as folder:
        package = os.path.join(folder, "pipeline.yaml")
        compiled = runner.compile_to_file(config, args.target, package)
        spec = schedule.ScheduleSpec(
            target=args.target, cron=args.cron, display_name=display_name,
            # This command's config decides the scheduled runs' parameters, stated explicitly in the request.
            package_path=package, parameter_values=runner.parameter_defaults(compiled),
            service_account=args.service_account or "", kfp_host=args.kfp_host or "", experiment=args.experiment)
        if args.dry_run:
            print(f"Dry run: these requests would go to {schedule.real_base_url(config, spec)}; nothing was sent.")
            for request in schedule.dry_run(config, spec):
                print(json.dumps(request.as_dict(), indent=2, sort_keys=True))
            return EXIT_OK
        name = schedule.create_schedule(config, spec)
    print(f"Created schedule {name} ({args.cron}) for {args.target}.")
    return EXIT_OK


def add_commands(commands) -> None:
    """Adds `compile` and `schedule` to the `hubtfx` sub-command parser."""
    compile_parser = commands.add_parser(
        "compile", help="Compile the pipeline for Vertex AI Pipelines or Kubeflow Pipelines 2.x.",
        description="Compile the same pipeline `run` executes into a KFP pipeline spec (KubeflowV2DagRunner): "
                    "every step runs --image, Beam steps run on Dataflow for --target vertex, the Trainer gets "
                    "the configured GPU, and data_root, training_config, eval_config (and range_config with "
                    "--use-spans) are runtime parameters. Nothing is uploaded; the spec is validated and checked "
                    "for local paths and credentials before it is written.")
    compile_parser.add_argument("--target", choices=_TARGETS, required=True)
    compile_parser.add_argument("--output", required=True, metavar="FILE",
                                help="Spec file to write: .json, or .yaml (what the KFP UI and kfp.Client take).")
    flags.add_config_flags(compile_parser)
    compile_parser.set_defaults(handler=cmd_compile)

    schedule_parser = commands.add_parser(
        "schedule", help="Create a recurring run: a Vertex AI schedule or a KFP recurring run.",
        description="Compile the pipeline and create a schedule that runs it on --cron, with the runtime "
                    "parameters taken from this command's config (so e.g. --stage2-epochs changes the "
                    "scheduled runs). --dry-run prints the exact HTTP requests instead of sending them.")
    schedule_parser.add_argument("--target", choices=_TARGETS, required=True)
    schedule_parser.add_argument("--cron", required=True,
                                 help='5-field cron, UTC, e.g. "0 3 * * 1" (Mondays 03:00).')
    schedule_parser.add_argument("--display-name", help="Schedule name. Default: <pipeline_name>-schedule.")
    schedule_parser.add_argument("--service-account", help="Service account the scheduled runs use.")
    schedule_parser.add_argument("--kfp-host", help="KFP API endpoint for --target kubeflow "
                                                    "[default: $KF_PIPELINES_ENDPOINT].")
    schedule_parser.add_argument("--experiment", default="hubtfx",
                                 help="KFP experiment of the recurring run (created if missing) [default: hubtfx].")
    schedule_parser.add_argument("--dry-run", action="store_true",
                                 help="Print the requests the client would send; send nothing.")
    flags.add_config_flags(schedule_parser)
    schedule_parser.set_defaults(handler=cmd_schedule)
