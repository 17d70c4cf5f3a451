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


def test_every_config_field_is_an_option_with_the_same_default_and_help():
    import inspect
    import typing

    from jobs.annotate import command, nightly_command
    from operators.config import AnnotatorConfig, RunConfig

    params = inspect.signature(command).parameters
    fields = {**AnnotatorConfig.model_fields, **{k: v for k, v in RunConfig.model_fields.items() if k != "annotator"}}
    assert set(params) == set(fields)
    for name, field in fields.items():
        if name not in ("input", "output"):
            assert params[name].default == field.default, name
        (info,) = typing.get_args(params[name].annotation)[1:]
        assert info.help == field.description, name
    assert "resume" not in inspect.signature(nightly_command).parameters  # nightly always resumes


def test_nightly_help_and_a_bad_choice_names_the_allowed_values(tmp_path):
    result = CliRunner().invoke(app, ["nightly", "--help"])
    assert result.exit_code == 0 and "--unit-mb" in result.output and "--resume" not in result.output
    bad = CliRunner().invoke(app, ["annotate", str(tmp_path), str(tmp_path / "o"), "--pooling", "max"])
    assert bad.exit_code == 2 and "pooling" in bad.output and "'mean' or 'mean_content'" in bad.output
