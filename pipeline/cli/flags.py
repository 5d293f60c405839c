"""The config flags: one per user-settable PipelineConfig field, for `run`, `retrain` and the cluster commands.

Its own module so hubtfx.kubeflow.cli can add the same flags without importing the command line that imports it.
"""
import argparse
import dataclasses

from hubtfx.pipeline import config as config_lib

_GROUP_TITLES = {
    "data": "data", "module": "backbone module", "training": "training", "evaluation": "evaluation",
    "output": "outputs",
}


def _flag(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per user-settable config field, generated so flags and config never drift apart."""
    parser.add_argument("--config", metavar="FILE", help="YAML file with config keys (flags override it).")
    groups = {}
    for field in config_lib.user_fields():
        group_name = field.metadata["group"]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(_GROUP_TITLES.get(group_name, group_name))
        default = field.default if field.default not in ("", None) else None
        help_text = field.metadata["help"] + (f" [default: {default}]" if default is not None else "")
        if field.type in ("bool", bool):
            groups[group_name].add_argument(_flag(field), dest=field.name, action=argparse.BooleanOptionalAction,
                                            default=None, help=help_text)
        else:
            groups[group_name].add_argument(_flag(field), dest=field.name, default=None,
                                            metavar=field.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """Defaults, then the YAML file, then the flags given on the command line."""
    config = config_lib.load_yaml(args.config) if args.config else config_lib.PipelineConfig()
    given = {f.name: getattr(args, f.name) for f in config_lib.user_fields() if getattr(args, f.name) is not None}
    return config_lib.from_mapping(given, config).validate()
