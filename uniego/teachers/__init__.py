"""Teachers of the paper's Table 1: a registry of teacher keys and architectures, and one
module per model family that builds, loads and runs them."""

from uniego.teachers.registry import ARCHS, TEACHERS, ArchSpec, TeacherSpec, get_arch, get_teacher
from uniego.teachers.build import Teacher, build_teacher

__all__ = ["ARCHS", "TEACHERS", "ArchSpec", "TeacherSpec", "Teacher", "build_teacher", "get_arch", "get_teacher"]
