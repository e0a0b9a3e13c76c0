"""Help screens without type noise: flags show no ``<bool>`` (they take no value), lists no ``<list[str]>``."""

from __future__ import annotations

from typer.core import TyperCommand, TyperGroup


def _no_type(ctx=None):
    return None


def _quiet(params):
    for param in params:
        if param.metavar is None and (getattr(param, "is_flag", False) or getattr(param, "count", False)):
            param.metavar = ""  # Typer's rich help prints the metavar, when set, instead of the type
        elif param.param_type_name == "argument" and param.nargs != 1 and hasattr(param, "display_type_rich"):
            param.display_type_rich = _no_type  # "inputs..." says it already; newer Typer would add <list[str]>
    return params


class Command(TyperCommand):
    def get_params(self, ctx):
        return _quiet(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx):
        return _quiet(super().get_params(ctx))
