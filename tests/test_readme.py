"""README.md: every command of its ``bash`` blocks is checked against the code.

``make`` targets exist; ``train.py``/``test.py`` overrides (direct, via ``torchrun``, or as
passed on by ``sh train.sh``/``test.sh`` run with a fake ``torchrun``) compose and pass the
configs' checks; other scripts parse their arguments; ``pip``/``conda``/``tensorboard``/
``sha256sum`` lines match pyproject.toml, env.yaml and the weights table. An unknown program
fails. ``<placeholder>`` (a user's value) is replaced by a word. The prose is checked in
test_readme_prose.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from fssam.engine.config import compose_config
from fssam.engine.tester import validate_test_config
from fssam.engine.config import per_process_batch, validate_config, validate_trainer

from .conftest import script_module

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PYTHONS = ("python", "python3", ".venv/bin/python")
SEPARATORS = ("&&", "||", ";", "|")
GENERIC = {"key=value", "--key"}  # prose about the override syntax itself


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block."""
    return re.findall(r"^ *```(\w*)\n(.*?)^ *```", text, flags=re.M | re.S)


def command_lines(text: str) -> list[str]:
    """Command lines of the ``bash`` blocks: continuations joined, placeholders filled."""
    lines = []
    for language, body in fenced_blocks(text):
        if language == "bash":
            body = re.sub(r"<([^<>\n]+)>", lambda m: re.sub(r"\W+", "_", m[1]), body)
            lines += [line.strip() for line in body.replace("\\\n", " ").splitlines()
                      if line.strip() and not line.strip().startswith("#")]
    return lines


def split_commands(line: str) -> list[list[str]]:
    """Simple commands of a line (``&&``, ``;``, ``|`` separated; ``for`` loops unrolled)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    if tokens[:1] == ["for"]:  # for VAR in VALUES ; do BODY ; done
        var, rest = tokens[1], tokens[3:]
        values, body = rest[:rest.index(";")], rest[rest.index("do") + 1:rest.index("done")]
        body_text = " ".join(shlex.quote(t) if t not in SEPARATORS else t for t in body)
        return [c for v in values for c in split_commands(body_text.replace(f"'${var}'", v))]
    commands, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


def hydra_check(script: str, args: list[str], world_size: int = 1) -> None:
    """The overrides compose with configs/<train|test>.yaml and pass the run's checks."""
    assert script in ("train.py", "test.py"), f"unknown Hydra entry point {script}"
    overrides = [a for a in args if not a.startswith("--") and a != "job"]
    flags = [a for a in args if a not in overrides]
    assert set(flags) <= {"--cfg", "job", "--resolve"}, f"unexpected flags {flags}"
    cfg = compose_config(script.removesuffix(".py"), overrides)
    if script == "train.py":
        validate_config(cfg)
        validate_trainer(cfg.trainer)
        per_process_batch(cfg.trainer, world_size)
    else:
        validate_test_config(cfg)
    assert str(cfg.run_dir)


def torchrun_check(args: list[str]) -> None:
    """``torchrun [--x=y ...] train.py|test.py overrides``."""
    script = next(i for i, a in enumerate(args) if a.endswith(".py"))
    flags = dict(a.lstrip("-").split("=", 1) for a in args[:script] if "=" in a)
    world = int(flags.get("nproc_per_node", 1)) * int(flags.get("nnodes", 1))
    hydra_check(Path(args[script]).name, args[script + 1:], world)


def shell_script_check(args: list[str], env: dict[str, str], tmp: Path) -> None:
    """``sh train.sh|test.sh ...`` exits 0 with a fake torchrun; its command is checked."""
    assert args[0] in ("train.sh", "test.sh"), f"unknown shell script {args[0]}"
    fake = tmp / "bin" / "torchrun"  # prints its arguments, one per line
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    run_env = {k: v for k, v in os.environ.items() if k not in ("NNODES", "NODE_RANK", "NGPUS")}
    run_env.update(env, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["sh", str(REPO / args[0]), *args[1:]], env=run_env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    torchrun_check(result.stdout.splitlines())


class _Parsed(Exception):
    """Raised right after a script's argparse accepted the arguments."""


def argparse_check(script: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The script's own parser accepts ``args`` (``main`` is stopped right after parsing);
    returns what it printed (the help text for ``--help``)."""
    assert script.is_file(), f"{script} does not exist"
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, *a, **k):
        original(self, *a, **k)
        raise _Parsed

    out, errors = io.StringIO(), io.StringIO()
    with monkeypatch.context() as patch, contextlib.redirect_stderr(errors), \
            contextlib.redirect_stdout(out):
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            script_module(script).main(args)
        except _Parsed:
            return out.getvalue()
        except SystemExit as exit_:
            assert exit_.code == 0 and "--help" in args, f"{script.name}: {errors.getvalue()}"
            return out.getvalue()
    raise AssertionError(f"{script.name} did not parse its arguments")


def cfg_job(script: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """``python train.py|test.py ... --cfg job`` through the script's own ``@hydra.main``,
    in this process (it composes and prints, runs nothing); returns the printed config."""
    out = io.StringIO()
    with monkeypatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(sys, "argv", [str(REPO / script), *args])
        GlobalHydra.instance().clear()  # importing sam2 (any earlier test may) initialises it
        try:  # the entry point the script calls (fssam.cli.train / fssam.cli.test)
            script_module(REPO / script).main()
        except SystemExit as exit_:
            assert not exit_.code, f"{script}: exit {exit_.code}"
        finally:
            GlobalHydra.instance().clear()
    return out.getvalue()


def external_check(program: str, args: list[str]) -> None:
    """Programs that are not ours: what they name must match the project's files."""
    pyproject = (REPO / "pyproject.toml").read_text()
    if program == "pip":
        for arg in args[1:]:
            if arg.startswith(".["):
                assert re.search(rf"^{arg[2:-1]} = \[", pyproject, flags=re.M), arg
            elif re.match(r"^[\w-]+[<>=]=?", arg):
                assert f'"{arg}"' in pyproject, f"{arg} is not pyproject's requirement"
    elif program == "conda" and args[:2] == ["env", "create"]:
        assert (REPO / args[args.index("-f") + 1]).is_file()
    elif program == "conda":
        assert args[0] == "activate" and f"\nname: {args[1]}\n" in (REPO / "env.yaml").read_text()
    elif program == "tensorboard":
        assert '"tensorboard' in pyproject and args[0] == "--logdir"
    elif program == "sha256sum":
        from fssam.tools.weights import SUMS_NAME
        assert args == ["-c", SUMS_NAME]
    else:
        assert program in ("cd", ".", "source"), f"README command not covered: {program} {args}"


def check_command(words: list[str], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dispatch one simple command (leading ``NAME=value`` words are its environment)."""
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        env.update([words.pop(0).split("=", 1)])
    program, args = words[0], words[1:]
    if program == "make":
        targets = re.findall(r"^([\w.-]+):", (REPO / "Makefile").read_text(), flags=re.M)
        assert set(args) <= set(targets), f"make {args}: no such target"
    elif program == "sh":
        shell_script_check(args, env, tmp)
    elif program == "torchrun":
        torchrun_check(args)
    elif program in PYTHONS and args[:2] == ["-m", "fssam.predict"]:
        argparse_check(REPO / "predict.py", args[2:], monkeypatch)
    elif program in PYTHONS and args[:2] == ["-m", "fssam.app"]:
        argparse_check(REPO / "fssam" / "app" / "__main__.py", args[2:], monkeypatch)
    elif program in PYTHONS and args[:2] == ["-m", "pytest"]:
        assert all((REPO / a).exists() for a in args[2:] if not a.startswith("-")), args
    elif program in PYTHONS and args[:1] == ["-m"]:
        assert args[1] == "venv", f"README command not covered: python -m {args[1]}"
    elif program in PYTHONS and args[0] in ("train.py", "test.py"):
        hydra_check(args[0], args[1:])
    elif program in PYTHONS:
        argparse_check(REPO / args[0], args[1:], monkeypatch)
    else:
        external_check(program, args)


def test_every_readme_command_is_covered(tmp_path, monkeypatch):
    lines = command_lines(README.read_text())
    assert len(lines) > 30
    failures = []
    for line in lines:
        for words in split_commands(line):
            try:
                check_command(list(words), tmp_path, monkeypatch)
            except Exception as err:  # collect them all
                failures.append(f"{line}\n    {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)


def readme_scripts() -> dict[str, list[list[str]]]:
    """Python scripts the README runs (``-m fssam.predict`` as ``predict.py``, ``-m fssam.app``
    as ``fssam/app/__main__.py``) -> their argv's."""
    scripts: dict[str, list[list[str]]] = {}
    for line in command_lines(README.read_text()):
        for words in split_commands(line):
            if words[0] in PYTHONS and words[1:3] == ["-m", "fssam.predict"]:
                scripts.setdefault("predict.py", []).append(words[3:])
            elif words[0] in PYTHONS and words[1:3] == ["-m", "fssam.app"]:
                scripts.setdefault("fssam/app/__main__.py", []).append(words[3:])
            elif words[0] in PYTHONS and words[1].endswith(".py"):
                scripts.setdefault(words[1], []).append(words[2:])
    return scripts


def test_entry_points_run_help_and_cfg_job(monkeypatch):
    """``--help`` of every script lists the flags the README gives it (and any ``--flag`` of
    the prose); ``--cfg job`` (compose, print, no work) runs for train.py and test.py."""
    scripts = readme_scripts()
    helps = {name: argparse_check(REPO / name, ["--help"], monkeypatch)
             for name in scripts if name not in ("train.py", "test.py")}
    cfg_runs = [[name, *args] for name in ("train.py", "test.py") for args in scripts[name]
                if "--cfg" in args] + [["test.py", *scripts["test.py"][0], "--cfg", "job"]]
    printed = [cfg_job(argv[0], argv[1:], monkeypatch) for argv in cfg_runs]
    assert len(printed) >= 2 and all("\nrun_dir: " in text for text in printed), printed
    missing = [(name, a) for name, argvs in scripts.items() if name in helps
               for argv in argvs for a in argv
               if a.startswith("--") and not re.search(rf"{a}\b", helps[name])]
    assert not missing, f"--help does not list {missing}"
    all_help = "\n".join(helps.values()) + " --cfg --resolve --nproc_per_node"
    prose_flags = set(re.findall(r"`(--[\w-]+)", README.read_text())) - GENERIC
    assert not [f for f in prose_flags if not re.search(rf"{f}\b", all_help)]


@pytest.mark.parametrize("line, message", [
    ("make nothing", "no such target"), ("wget http://x/y", "not covered: wget"),
    ("python train.py sam2=base", "Could not find 'sam2/base'"),
    ("python train.py shot=0", "shot=0: must be >= 1"),
    ("python train.py trainer.lrr=1", "Could not override 'trainer.lrr'"),
    ("python test.py checkpoint_format=theirs", "override checkpoint_format=theirs"),
    ("torchrun --nproc_per_node=3 train.py experiment=pascal_fssam", "not divisible by the 3"),
    ("sh train.sh 4 29500 voc 0 1 FSSAM small", "unknown dataset 'voc'"),
    ("sh test.sh pascal 0 1 FSSAM small sam2.nope=1", "Could not override 'sam2.nope'"),
    ("python predict.py --checkpoint x.pt --support-images a.jpg --support-masks m.png "
     "--query q.jpg --no-such-flag", "unrecognized arguments: --no-such-flag"),
    ("python scripts/missing.py --help", "missing.py does not exist"),
    ("python -m fssam.nothing", "not covered: python -m fssam.nothing"),
    ("pip install 'torch>=1.0'", "torch>=1.0 is not pyproject's requirement"),
])
def test_checker_rejects_wrong_commands(line, message, tmp_path, monkeypatch):
    with pytest.raises(Exception, match=re.escape(message)):
        for words in split_commands(line):
            check_command(words, tmp_path, monkeypatch)
