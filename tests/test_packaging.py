"""setup.py + pyproject.toml: the wheel installs one `hubtfx` namespace and nothing else at the top level, and it
works in a clean venv next to a package that owns the Kubeflow SDKs' `kubeflow.*` namespace."""
import os
import subprocess
import sys
import textwrap
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UV = os.path.join(os.path.dirname(sys.executable), "uv")


def _build_wheel(source: str, out_dir: str) -> str:
    subprocess.run([UV, "build", "--wheel", "--out-dir", out_dir, source], check=True, capture_output=True)
    (wheel,) = [f for f in os.listdir(out_dir) if f.endswith(".whl")]
    return os.path.join(out_dir, wheel)


def _kubeflow_sdk_stand_in(folder) -> str:
    """A package laid out like kubeflow-training / kubeflow-katib: it owns the top-level `kubeflow` package."""
    package = folder / "kubeflow" / "training"
    package.mkdir(parents=True)
    (folder / "kubeflow" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("OWNER = 'kubeflow-sdk-stand-in'\n")
    (folder / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=70"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "kubeflow-sdk-stand-in"
        version = "1.0"
        [tool.setuptools]
        packages = ["kubeflow", "kubeflow.training"]
        """))
    return _build_wheel(str(folder), str(folder / "dist"))


def test_the_wheel_holds_only_the_hubtfx_namespace(tmp_path):
    wheel = _build_wheel(REPO, str(tmp_path))
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
        entry_points = archive.read("hubtfx-0.1.0.dist-info/entry_points.txt").decode()
    assert top_level == {"hubtfx", "hubtfx-0.1.0.dist-info"}
    assert "hubtfx = hubtfx.pipeline.cli.entry:main" in entry_points
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"hubtfx/schemas/schema.pbtxt", "hubtfx/components/trainer/run.py", "hubtfx/kubeflow/runner.py",
            "hubtfx/pipeline/reporting/report.html.j2"} <= names


def test_a_clean_venv_imports_hubtfx_beside_a_kubeflow_sdk(tmp_path):
    wheel = _build_wheel(REPO, str(tmp_path / "dist"))
    stand_in = _kubeflow_sdk_stand_in(tmp_path / "standin")
    venv = tmp_path / "venv"
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([UV, "pip", "install", "--quiet", "--python", python, "--no-deps", wheel, stand_in], check=True)
    # The third-party stack (TFX, TF, kfp, ...) comes from this project's environment, listed after the clean
    # venv's own site-packages, so hubtfx and `kubeflow` resolve from the clean venv only.
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    stack = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(site, "zz_project_stack.pth"), "w") as f:
        f.write(stack + "\n")
    probe = textwrap.dedent("""\
        import kubeflow.training, hubtfx.kubeflow.runner, hubtfx.pipeline.pipeline, hubtfx.components.trainer.run
        import hubtfx.schemas, os
        print(kubeflow.training.OWNER)
        print(os.path.dirname(hubtfx.kubeflow.runner.__file__))
        print(os.path.exists(os.path.join(hubtfx.schemas.SCHEMA_DIR, "schema.pbtxt")))
        from hubtfx.pipeline.reporting import report
        print(report._macros().page.name)
        """)
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=str(tmp_path),
                            env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    owner, runner_dir, schema_shipped, report_template = result.stdout.split()
    assert owner == "kubeflow-sdk-stand-in"
    assert runner_dir == os.path.join(site, "hubtfx", "kubeflow") and schema_shipped == "True"
    assert report_template == "page"  # the report's Jinja2 template loads from the installed package
    assert not os.path.exists(os.path.join(site, "pipeline")) and not os.path.exists(os.path.join(site, "components"))
