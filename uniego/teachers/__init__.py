"""Teachers of the paper's Table 1: a registry of teacher keys and architectures, and one
module per model family that builds, loads and runs them.

`Teacher` and `build_teacher` are imported on first use (they pull in torch and timm), so the
registry stays cheap to import: Snakemake reads it whenever it builds the DAG."""

from uniego.teachers.registry import ARCHS, TEACHERS, ArchSpec, TeacherSpec, get_arch, get_teacher

__all__ = ["ARCHS", "TEACHERS", "ArchSpec", "TeacherSpec", "Teacher", "build_teacher", "get_arch", "get_teacher"]


def __getattr__(name):
    if name in ("Teacher", "build_teacher"):
        from uniego.teachers import build
        return getattr(build, name)
    raise AttributeError(f"module 'uniego.teachers' has no attribute {name!r}")
