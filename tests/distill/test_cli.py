import importlib
import subprocess
import sys
import typing

from distill.engine.config import ExportConfig

from distill.cli import COMMAND_MODULES, build_parser
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


# The flags each command had before they were generated from the config models: every one still works.
EARLIER_FLAGS = {
    "generate": "--config --input --output-dir --base-url --model --api-key-env --task --template --id-field "
    "--input-field --samples-per-input --temperature-first --temperature-rest --max-tokens --concurrency --rpm "
    "--tpm --retries --budget --shard-max-bytes --force --retry-failed --no-progress",
    "export": "--run-dir --out-dir --format --with-thinking --name --review",
    "train": "--config --data --eval-file --output-dir --base-model --format --lora-rank --lora-alpha "
    "--learning-rate --epochs --per-device-batch-size --gradient-accumulation-steps --max-steps --val-size "
    "--eval-steps --max-length --overlong --token-budget --save-steps --seed --dtype --device --deepspeed --nproc "
    "--nnodes --node-rank --master-addr --master-port --packing --no-packing --resume --merge",
    "eval": "--config --eval-set --output-dir --limit --backend --no-latency --no-plots",
    "run": "--output-dir --force",
    "make-contracts": "--out --train --eval --train-seed --eval-seed --english-share",
    "serve-reference-teacher": "--truth --port --latency-ms --latency-spread-ms --stream-ms-per-token",
    "serve-fake-teacher": "--config --port --latency-ms --rpm --tpm --error-500-rate --model",
}


def test_earlier_flag_names_keep_working():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, flags in EARLIER_FLAGS.items():
        options = {option for action in commands[name]._actions for option in action.option_strings}
        assert set(flags.split()) <= options, (name, set(flags.split()) - options)


def test_the_command_map_lists_every_declared_command():
    declared = {
        command.name
        for module in set(COMMAND_MODULES.values()) - {"distill.bench.commands"}
        for command in importlib.import_module(module).COMMANDS
    }
    declared |= {"batches", "bench"}  # built by hand, and the benchmarks' group
    assert declared == set(COMMAND_MODULES)
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(COMMAND_MODULES)


def test_a_command_imports_only_its_own_package():
    code = (
        "import sys\nfrom distill.cli import main\ntry:\n    main(['generate', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['distill', p] for p in "
        "('trainer', 'evaluator', 'pipeline', 'review', 'testing', 'bench'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--max-tokens" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
