"""Bytes of Transform's output / bytes of the source images (issue 7, item 5). Goal <= 2.

hubtfx runs Transform with materialize=False: its output is the transform graph (decode, resize, scale), which
the Trainer and the exported model apply to the raw examples themselves. For context the script also reports
what materializing would have cost, computed (not written): float32 height x width x 3 per image, without the
TFRecord framing.

The pipeline runs up to Transform (ExampleGen, StatisticsGen, schema, validation, the anomaly gate, Transform)
on the sample data `hubtfx run` generates.

Usage: python -m benchmarks.transform_size [--quick] [--json FILE]
(--quick uses the tiny test module and 4 images per class; CI runs it so the script cannot rot.)
"""
import os
import sys
import tempfile
from typing import Dict, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx import v1 as tfx  # noqa: E402

from hubtfx.pipeline import local_runner  # noqa: E402
from hubtfx.pipeline.config import PipelineConfig  # noqa: E402
from hubtfx.pipeline.datasets import sample_data  # noqa: E402
from hubtfx.pipeline.hub_modules import module_resolution  # noqa: E402
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule  # noqa: E402
from hubtfx.pipeline.hub_modules import tiny  # noqa: E402
from hubtfx.pipeline.pipeline import create_components  # noqa: E402
from benchmarks import common  # noqa: E402

GOALS = {"transform_output_vs_source": ("<=", 2.0)}
SAMPLE_SEED = 0  # the seed `hubtfx run` generates its sample data with
FLOAT32_BYTES = 4


def prepare(quick: bool, work_dir: str) -> Tuple[PipelineConfig, ResolvedModule]:
    """The benchmark's config (sample data under `work_dir`) and its resolved module (tiny with `quick`)."""
    images_per_class = 4 if quick else PipelineConfig.sample_images_per_class
    data_root = os.path.join(work_dir, "data")
    sample_data.generate_dataset(data_root, images_per_class=images_per_class, seed=SAMPLE_SEED)
    hub_handle = tiny.build_tiny_module(os.path.join(work_dir, "tiny"), image_size=32) if quick else ""
    config = PipelineConfig(data_root=data_root, output_dir=os.path.join(work_dir, "output"), hub_handle=hub_handle)
    return config, module_resolution.resolve(config)


def run_up_to_transform(config: PipelineConfig, module: ResolvedModule) -> None:
    """The pipeline's own components for `config` and its ResolvedModule, cut after Transform (the Trainer and
    later add nothing to measure)."""
    components = create_components(config, module)
    cut = next(i for i, c in enumerate(components) if isinstance(c, tfx.components.Transform)) + 1
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root, components=components[:cut],
        metadata_connection_config=local_runner.metadata_connection_config(config),
        beam_pipeline_args=local_runner.LOCAL_BEAM_ARGS))


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def component_output_bytes(config: PipelineConfig, component_id: str) -> Dict[str, int]:
    """Bytes per output key: LocalDagRunner writes <pipeline_root>/<component>/<output key>/<execution id>/."""
    root = os.path.join(config.pipeline_root, component_id)
    return {key: folder_bytes(os.path.join(root, key)) for key in sorted(os.listdir(root))
            if not key.startswith(".")}  # .system holds the executor's scratch files, not outputs


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as work_dir:
        config, module = prepare(quick, work_dir)
        run_up_to_transform(config, module)
        source_bytes = folder_bytes(config.data_root)
        images = sum(len(names) for _, _, names in os.walk(config.data_root))
        transform_outputs = component_output_bytes(config, "Transform")
        examples_bytes = sum(component_output_bytes(config, "ImageFolderExampleGen").values())
    height, width = module.image_size
    materialized = images * height * width * 3 * FLOAT32_BYTES
    transform_bytes = sum(transform_outputs.values())
    return {
        "mode": "quick" if quick else "full",
        "images": images,
        "image_size": [height, width],
        "source_bytes": source_bytes,
        "example_gen_bytes": examples_bytes,
        "transform_output_bytes": transform_outputs,
        "transform_output_total_bytes": transform_bytes,
        "transform_output_vs_source": round(transform_bytes / source_bytes, 4),
        "materialized_float32_bytes": materialized,
        "materialized_vs_source": round(materialized / source_bytes, 2),
    }


def _mb(value: int) -> str:
    return f"{value / 1e6:10.3f} MB"


def render(results: dict) -> str:
    height, width = results["image_size"]
    lines = [f"Transformed data size ({results['mode']}: {results['images']} source images, Transform output "
             f"{height}x{width}x3, materialize=False)",
             f"  source image files                      {_mb(results['source_bytes'])}",
             f"  ExampleGen tf.Examples (raw bytes)      {_mb(results['example_gen_bytes'])}",
             f"  Transform outputs, total                {_mb(results['transform_output_total_bytes'])}"]
    lines += [f"    {key:37s} {_mb(value)}" for key, value in results["transform_output_bytes"].items()]
    lines += [f"  if materialized (float32, computed)     {_mb(results['materialized_float32_bytes'])}  "
              f"({results['materialized_vs_source']:.1f}x the source)"]
    lines += common.goal_lines(results, GOALS, digits=4)
    return "\n".join(lines)


def main(argv=None) -> int:
    return common.run_cli(__doc__, run, render, argv)


if __name__ == "__main__":
    sys.exit(main())
