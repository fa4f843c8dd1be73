import subprocess
import sys
import typing

from distill.engine.config import ExportConfig

from distill.cli import build_parser
from distill.review.decisions import EXPORT_MODES


def test_every_subcommand_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert "bench" in commands
    for name, sub in commands.items():
        assert sub.format_help().startswith("usage: distill " + name)


def test_help_does_not_import_torch():
    # The engine must run where torch is not installed: building the parser may not import it.
    code = "import sys; from distill.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_export_review_choices_are_the_review_modes():
    choices = typing.get_args(typing.get_args(ExportConfig.model_fields["review"].annotation)[0])
    assert set(choices) == set(EXPORT_MODES)
