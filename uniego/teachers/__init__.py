"""Teachers of the paper's Table 1: a registry of teacher keys and architectures, and one
module per model family that builds, loads and runs them.

`Teacher` and `build_teacher` are imported on first use (they pull in torch and timm), so the
registry stays cheap to import: Snakemake reads it whenever it builds the DAG."""

from uniego.teachers.registry import ARCHS, TEACHERS, ArchSpec, TeacherSpec, get_arch, get_teacher

__all__ = ["ARCHS", "TEACHERS", "ArchSpec", "TeacherSpec", "Teacher", "build_teacher", "get_arch", "get_teacher"]


def __getattr__(name):
    if name == "Teacher":
        from uniego.teachers.base import Teacher
        return Teacher
    if name == "build_teacher":
        from uniego.teachers.build import build_teacher
        return build_teacher
    raise AttributeError(f"module 'uniego.teachers' has no attribute {name!r}")
