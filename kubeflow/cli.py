"""`hubtfx compile`, `hubtfx schedule` and `hubtfx execute-spec`: the cluster commands, added to the main parser by
hubtfx.pipeline.cli.commands (which imports this module, so this one takes only the flags, exit codes and
ConfigError)."""
import argparse
import json
import os
import tempfile

from hubtfx.pipeline.cli import flags
from hubtfx.pipeline.cli.exit_codes import EXIT_FAILED, EXIT_OK
from hubtfx.pipeline.errors import ConfigError

# Imported lazily by the handlers: TFX and the cloud clients take seconds to import, `hubtfx run` needs neither.
_TARGETS = ("vertex", "kubeflow")


def cmd_compile(args: argparse.Namespace) -> int:
    config = flags.config_from_args(args)  # First: a bad config is refused in a second, before TFX loads.
    from hubtfx.kubeflow import runner  # pylint: disable=import-outside-toplevel
    config, module = runner.prepare(config, args.target, allow_local_paths=args.allow_local_paths)
    spec = runner.compile_to_file(config, module, args.target, args.output, allow_local_paths=args.allow_local_paths)
    print(describe(spec, args.output))
    return EXIT_OK


def cmd_execute_spec(args: argparse.Namespace) -> int:
    from hubtfx.kubeflow import execute_spec  # pylint: disable=import-outside-toplevel
    options = execute_spec.Options(
        backend=args.backend or "", params=args.param or [], pipeline_root=args.pipeline_root or "",
        metadata_path=args.metadata or "", run_id=args.run_id or "", parallelism=args.parallelism,
        enable_cache=not args.no_cache, beam_mode=args.beam_mode, warm_start=args.warm_start,
        log=lambda line: print(line, flush=True))
    try:
        result = execute_spec.execute(args.spec, options)
    except execute_spec.SpecError as e:
        raise ConfigError(str(e)) from None
    print(execute_spec.describe(result), flush=True)
    return EXIT_OK if result.succeeded else EXIT_FAILED


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
        config, module = runner.prepare(config, args.target)
        compiled = runner.compile_to_file(config, module, args.target, package)
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
    compile_parser.add_argument("--allow-local-paths", action="store_true",
                                help="Dry run: a spec for `hubtfx execute-spec` on this machine, which may name local "
                                     "folders, this machine's module and schema (no image or project needed). "
                                     "Such a spec cannot run on a cluster.")
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

    execute_parser = commands.add_parser(
        "execute-spec", help="Run a compiled spec on this machine, task by task, as the KFP / Vertex launcher would.",
        description="Run a spec written by `hubtfx compile` on this machine: each container task gets the "
                    "ExecutorInput the backend would build and runs its own command with this environment's "
                    "Python; importers import, Vertex resolvers query the local record of earlier runs (an ML "
                    "Metadata SQLite file), Dataflow steps run on Beam's local FnApiRunner. Compile with "
                    "--allow-local-paths for a spec whose folders are on this machine.")
    execute_parser.add_argument("spec", metavar="SPEC", help="The compiled spec, .json or .yaml.")
    execute_parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                                help="A runtime parameter value (repeatable), e.g. --param data_root=/data/flowers.")
    execute_parser.add_argument("--backend", choices=("kubeflow", "vertex"),
                                help="Whose launcher to imitate [default: vertex if the spec has resolvers or "
                                     "preCacheCheck hooks, else kubeflow].")
    execute_parser.add_argument("--pipeline-root", help="Where artifacts go [default: the spec's pipeline root].")
    execute_parser.add_argument("--metadata", metavar="FILE",
                                help="The record of runs (SQLite) [default: <pipeline root>/execute_spec_metadata.sqlite].")
    execute_parser.add_argument("--run-id", help="Run id [default: run-<date>-<time>-<random>].")
    execute_parser.add_argument("--parallelism", type=int, default=2, help="Tasks run at once [default: 2].")
    execute_parser.add_argument("--no-cache", action="store_true", help="Run every task, even with a cache hit.")
    execute_parser.add_argument("--beam-mode", choices=("spec", "in_memory", "multi_processing"), default="spec",
                                help="Local Beam (FnApiRunner) mode: 'spec' keeps the spec's (Dataflow becomes "
                                     "multi_processing) [default: spec].")
    execute_parser.add_argument("--warm-start", action="store_true",
                                help="Fork each `python -m` task from one interpreter that imported the spec's "
                                     "modules once (saves ~20 s of CPU per task; the same commands and arguments).")
    execute_parser.set_defaults(handler=cmd_execute_spec)
