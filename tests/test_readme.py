"""Every command the README and the docs pages show works as written, and every link resolves.

The commands come from the texts themselves (README.md and every docs/*.md page; the reports
under docs/published/ are the pipeline's, not ours): their bash code blocks, the inline
`snakemake ...` spans, and the README's quick-start table. Each is checked the cheapest way that
still runs it:
- `snakemake ...`: exactly as written plus `-n` (a dry run), in a copy of the workflow where
  the paper datasets' roots hold small fixtures in their official formats;
- `uniego ...`: its words parsed by the real CLI parser, then `validate-config` and `targets`
  run for real, the others with `--help`;
- `pytest`: the command `.ci/run` runs, so CI and the README cannot drift;
- installs: the files they name exist (CI itself runs the install).
A README or docs edit that breaks a command or a link fails here. The README stays short (at most
200 lines); the detail lives in docs/.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests import official_formats as F
from tests.conftest import REPO, copy_workflow

README = (REPO / "README.md").read_text()
DOCS = sorted((REPO / "docs").glob("*.md"))   # one page per topic; docs/published/ is not globbed
TEXTS = [README] + [page.read_text() for page in DOCS]   # the README first: its install comes first


def _code_block_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _quick_start_commands() -> list[str]:
    table = README.split("## Quick start", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [re.search(r"`([^`]+)`", row.split("|")[2]).group(1) for row in rows]


def _inline_snakemake_commands(text: str) -> list[str]:
    return [" ".join(c.split()) for c in re.findall(r"`(snakemake [^`]+)`", text)]


def _split(chains: list[str]) -> list[str]:
    """`&&` chains split, in order, without repeats."""
    seen = []
    for chain in chains:
        for command in (c.strip() for c in chain.split("&&")):
            if command not in seen:
                seen.append(command)
    return seen


def _readme_chains() -> list[str]:
    return _code_block_commands(README) + _quick_start_commands() + _inline_snakemake_commands(README)


def readme_commands() -> list[str]:
    """Every shell command the README itself shows."""
    return _split(_readme_chains())


def documented_commands() -> list[str]:
    """Every shell command the README and the docs pages show, the README's first."""
    docs = [c for text in TEXTS[1:] for c in _code_block_commands(text) + _inline_snakemake_commands(text)]
    return _split(_readme_chains() + docs)


README_COMMANDS = readme_commands()
COMMANDS = documented_commands()


def test_the_readme_shows_the_commands_we_expect_to_check():
    programs = {shlex.split(c)[0] for c in COMMANDS}
    assert {"snakemake", "uniego", "pytest", "pip"} <= programs
    assert programs <= {"snakemake", "uniego", "pytest", "pip", "conda", "python"}, programs
    assert sum(c.startswith("snakemake") for c in COMMANDS) >= 8


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """A copy of the workflow with the paper datasets' fixtures where config.yaml expects them."""
    work = tmp_path_factory.mktemp("readme")
    copy_workflow(work, "tests/configs")
    F.make_eef(work / "data/EgoExo-Fitness")
    F.make_a101(work / "data/Assembly101")
    F.make_ee4d(work / "data/EgoExo4D")
    (work / "checkpoints").mkdir()
    for f in ("depth_anything_vitl14.pth", "TimeSformer_divST_8x32_224_K400.pyth", "stgcn_pyskl_ntu60_hrnet.pth"):
        (work / "checkpoints" / f).write_bytes(b"weights the user downloaded (a dry run does not read them)")
    return work


def _run(args, cwd):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("snakemake")])
def test_snakemake_command_plans(command, workflow):
    args = shlex.split(command)
    if "--report" in args:   # a report of a finished run: Snakemake plans nothing for it; check the target plans
        i = args.index("--report")
        args = args[:i] + args[i + 2:]
    r = _run([sys.executable, "-m", *args, "-n"], workflow)
    assert r.returncode == 0, f"{command} -n failed:\n{(r.stdout + r.stderr)[-3000:]}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("uniego")])
def test_uniego_command_parses_and_runs(command, workflow):
    from uniego.cli import build_parser

    args = shlex.split(command)[1:]
    build_parser().parse_args(args)   # an unknown option or a missing argument exits here
    runnable = args[0] in ("validate-config", "targets")
    r = _run([sys.executable, "-m", "uniego", *(args if runnable else [args[0], "--help"])], workflow)
    assert r.returncode == 0, f"{command}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    assert r.stdout.strip()


def test_ci_runs_the_readme_install_and_test_commands():
    tests = [c for c in COMMANDS if c.split()[0] == "pytest"]
    assert tests == ["pytest"] and "pytest" in README_COMMANDS
    ci = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert ci[-1] == "pytest", ".ci/run must end by running the README's test command, exactly"
    install = README_COMMANDS[0]
    assert install.startswith("pip install -r requirements/lock.txt")
    assert any(line.startswith(install) for line in ci), f".ci/run does not run the README's install: {install}"
    assert ".ci/check-lock requirements/lock.txt" in ci


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] in ("pip", "conda", "python")])
def test_install_and_python_commands_name_real_files(command):
    for word in shlex.split(command):
        if word.endswith((".yaml", ".txt", ".toml")) or word.startswith(".["):
            path = REPO / ("pyproject.toml" if word.startswith(".[") else word)
            assert path.exists(), f"{command}: {word} is not in the repository"
    if command.startswith("pip install -e"):
        extras = re.search(r"\.\[(\w+)\]", command).group(1)
        assert f"\n{extras} = [" in (REPO / "pyproject.toml").read_text()


def test_inline_uniego_commands_exist():
    from uniego.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    named = {name for text in TEXTS for name in re.findall(r"`uniego ([a-z][a-z-]+)", text)}
    assert named - set(sub.choices) == set(), "the README or docs name uniego commands the CLI lacks"


def test_readme_results_are_the_pipelines_own_published_reports():
    """The README types no results: its demo section has no table, and it links reports that
    `uniego publish` copied from the pipeline's own report files (header, figures present)."""
    from uniego.stages.report import FIGURE, GENERATED

    demo = README.split("## The demo: what it measures")[1].split("\n## ")[0]
    assert "|---" not in demo
    links = re.findall(r"\]\((docs/published/[^)]+\.md)\)", README)
    assert links, "the README links no published report"
    for link in links:
        text = (REPO / link).read_text()
        assert text.startswith(GENERATED) and "# uniego report:" in text and "## Environment" in text, link
        for _, figure in FIGURE.findall(text):
            assert (REPO / link).parent.joinpath(figure).is_file(), f"{link} links {figure}, which is missing"


def test_the_readme_is_short():
    """The README is the front page: the commands, what it is, the quick start, the links."""
    lines = README.count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move the detail into a docs/ page"
    assert "## Documentation" in README


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_files(page):
    """Every relative link in the README and the docs pages names a file of the repository
    (relative to the page; an anchor after `#` is not checked)."""
    text = page.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = [t for t in targets if not t.startswith(("http://", "https://", "mailto:", "#"))
              and not (page.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{page.relative_to(REPO)} links missing files: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = set(re.findall(r"\]\((docs/[^)#/]+\.md)", README))
    assert {f"docs/{page.name}" for page in DOCS} <= linked
