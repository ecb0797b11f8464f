"""Every ``ros2 launch`` / ``ros2 run`` example of README.md and docs/*.md, run as far as
argument validation.

The commands are parsed from their code blocks, so an example that names a launch
argument no launch file declares (or a value outside its choices, an executable the package
does not install, a parameter the node does not declare) fails here instead of being silently
ignored on a user's robot. ``ros2 launch ... --show-args`` lists what a launch file declares
without starting anything; an undeclared argument must make ``ros2 launch`` fail.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

pytest.importorskip("launch_ros", reason="launch_ros (ros2-extras) not importable")
pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(shutil.which("ros2") is None, reason="the ros2 CLI is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "cct_surgical_seg"
CHOICES = re.compile(r"Valid choices are: \[(.*?)\]")


def readme_commands(kind: str) -> list[list[str]]:
    """``ros2 <kind> ...`` commands of the code blocks of README.md and docs/*.md, continuation
    lines joined."""
    commands = []
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ").split(" # ")[0]
            if line.startswith(f"ros2 {kind} "):
                commands.append(shlex.split(line.replace("[", " ").replace("]", " ")))
    return commands


@cache
def declared_arguments(launch_file: str) -> dict[str, list[str] | None]:
    """name -> choices (None = any value), from ``ros2 launch PACKAGE FILE --show-args``."""
    out = subprocess.run(
        ["ros2", "launch", PACKAGE, launch_file, "--show-args"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    declared: dict[str, list[str] | None] = {}
    for name, body in re.findall(r"^    '(\w+)':\n(.*?)(?=^    '|\Z)", out, re.S | re.M):
        found = CHOICES.search(" ".join(body.split()))
        declared[name] = [c.strip().strip("'") for c in found.group(1).split(",")] if found else None
    assert declared, out
    return declared


def test_readme_has_launch_and_run_examples() -> None:
    assert len(readme_commands("launch")) >= 3 and readme_commands("run")


@pytest.mark.parametrize("command", readme_commands("launch"), ids=lambda c: " ".join(c[2:4]))
def test_readme_launch_example_uses_declared_arguments(command: list[str]) -> None:
    assert command[2] == PACKAGE, command
    declared = declared_arguments(command[3])
    for token in command[4:]:
        name, sep, value = token.partition(":=")
        assert sep, f"{token!r} in {' '.join(command)} is not a name:=value launch argument"
        assert name in declared, f"README passes {name}:= to {command[3]}, which declares {sorted(declared)}"
        choices = declared[name]
        if choices is not None and not value.startswith(("/", "<")):
            assert value in choices, f"{name}:={value} is not one of {choices}"


def test_readme_transport_compressed_is_a_declared_launch_argument() -> None:
    assert "transport:=compressed" in (ROOT / "README.md").read_text()
    assert "compressed" in (declared_arguments("segmentation.launch.py")["transport"] or [])


@pytest.mark.parametrize("launch_file", ["segmentation.launch.py", "demo.launch.py"])
def test_an_undeclared_launch_argument_fails_the_launch(launch_file: str, ros_env, tmp_path) -> None:
    out = subprocess.run(
        ["ros2", "launch", PACKAGE, launch_file, "bogus_argument:=1", "model:=/nonexistent/model.onnx"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ros_env,
        cwd=tmp_path,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "unknown launch argument(s): bogus_argument" in text
    assert "process started" not in text  # refused before any node started


@pytest.mark.parametrize("command", readme_commands("run"), ids=lambda c: " ".join(c[2:4]))
def test_readme_run_example_names_an_installed_executable_and_real_files(command: list[str]) -> None:
    from cct_surgical_seg.ros import parameters

    assert command[2] == PACKAGE, command
    executables = subprocess.run(
        ["ros2", "pkg", "executables", PACKAGE], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert command[3] in executables, f"{command[3]} not in {executables}"
    args = command[command.index("--ros-args") + 1 :] if "--ros-args" in command else []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag == "--params-file":
            assert (ROOT / value).is_file(), value
        elif flag == "-p":
            assert value.split(":=")[0] in parameters.SPEC_BY_NAME, value
        elif flag == "-r":
            assert value.split(":=")[0] in ("image", "camera_info", "__ns", "__node"), value
        else:
            pytest.fail(f"unexpected --ros-args flag {flag} in the README")
