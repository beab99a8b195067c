"""What a result was computed with: the versions of the packages that can change numbers, and
the machine. Every checkpoint (`meta.environment`), every store (attribute `environment`) and
every report records it, so a number that moved can be traced to a version or a CPU.

Float kernels differ between CPU families (AVX2 vs AVX-512 code paths) and thread counts, so
`cpu`, `cpu_capability` and `torch_threads` are recorded beside the versions.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The packages whose version can change a result: decoding (av, decord, pillow), arrays and
# kernels (numpy, torch), models (timm, open_clip) and stores (zarr, numcodecs).
PACKAGES = ("torch", "torchvision", "numpy", "av", "decord", "pillow", "timm", "open_clip_torch", "zarr", "numcodecs")


def environment() -> dict:
    """{"python", "packages": {name: version}, "machine": {...}} (JSON-able, stable on one machine)."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    packages["torch"] = _torch_build() or packages["torch"]
    return {"python": platform.python_version(), "packages": packages, "machine": machine()}


@functools.cache
def _torch_build() -> str | None:
    """torch's own version string, with its build (2.14.1+cu130 vs +cpu), read without importing torch."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()
    except (AttributeError, TypeError, OSError):
        return None
    m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, flags=re.M)
    return m.group(1) if m else None


@functools.cache
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU (model, cores, the vector code path torch uses, its threads) and the GPU, if used."""
    out = {"os": f"{platform.system()} {platform.machine()}", "cpu": _cpu_model(), "cpus": os.cpu_count()}
    torch = sys.modules.get("torch")   # only when the job already uses torch: never import it for this
    if torch is not None:
        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
        out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return out


def markdown(env: dict) -> list[str]:
    """The report's lines for an environment."""
    m = env["machine"]
    gpu = m.get("gpu") or "none"
    return [", ".join(f"{k} {v}" for k, v in env["packages"].items()) + f", Python {env['python']}.", "",
            f"Machine: {m['cpu']} ({m['cpus']} CPUs, {m['os']}); GPU: {gpu}."]
