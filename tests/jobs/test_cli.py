import subprocess
import sys

from typer.testing import CliRunner

from jobs.cli import app


def test_help_lists_the_options():
    result = CliRunner().invoke(app, ["annotate", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--text-column", "--id-column", "--address", "--actors", "--gpus-per-actor", "--batch-size"):
        assert option in result.output


def test_config_errors_are_one_line_not_a_traceback(tmp_path):
    result = CliRunner().invoke(app, ["annotate", str(tmp_path / "none"), str(tmp_path / "out"), "--batch-size", "0"])
    assert result.exit_code == 2
    assert "invalid options: batch_size" in result.output and "Traceback" not in result.output


def test_job_entry_point_is_the_same_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jobs.annotate", str(tmp_path / "missing"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "no Parquet files found" in result.stderr


def test_every_config_field_is_an_annotate_option_with_the_same_default():
    import inspect

    from jobs.annotate import command
    from operators.config import AnnotateConfig

    params = inspect.signature(command).parameters
    for name, field in AnnotateConfig.model_fields.items():
        assert name in params, f"--{name.replace('_', '-')} is missing from the CLI"
        if name not in ("input", "output"):
            assert params[name].default == field.default, name
