"""The workflow passes `snakemake --lint` and snakefmt (issue 21): every rule names its conda environment,
the rule files hold no functions (they live in workflow/rules/common.smk), no path is built with
'+'. A few seconds: the lint parses the workflow and runs nothing."""

import subprocess
import sys

from tests.conftest import REPO


def test_snakemake_lint_is_clean():
    r = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Lints for" not in out, out
    assert "good condition" in out, out


def test_snakefmt_is_clean():
    """The rule files as snakefmt writes them ([tool.snakefmt] in pyproject.toml; `snakefmt
    Snakefile workflow/` repairs them)."""
    r = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
