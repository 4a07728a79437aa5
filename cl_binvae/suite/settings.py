"""A method's own settings, and the command-line flags they become.

A method that takes settings registers a frozen dataclass instance holding their defaults
(``register_method(..., settings=MySettings())``). Each field is one flag of the driver,
``--field-name``, declared with :func:`flag`; a value that is not valid raises ``ValueError``
in the dataclass's ``__post_init__``, which the driver reports in one line. Fields of the same
name in two methods' settings are one flag, so they must mean the same thing (type, choices).

``MethodSettings`` is the base of settings that are not our replay's (``ReplaySettings``, in
:mod:`cl_binvae.suite.replay_settings`): it checks, names and sorts them for tables.

Plain Python, no torch: the driver builds its parser from these before importing torch.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def flag(default: Any, help: str, choices: Sequence[Any] | None = None) -> Any:
    """A settings field that is a command-line flag: its default, its ``--help`` text and
    the values it may take (checked by the parser)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": tuple(choices) if choices is not None else None})


@dataclass(frozen=True)
class Flag:
    """One command-line flag of a method's settings: ``--name`` (underscores as dashes).

    ``kind`` is the field's type (bool, int, float or str); ``choices`` its allowed values,
    None for any. Non-bool flags take one or more values, and several values sweep."""

    field: str
    kind: type
    help: str
    choices: tuple[Any, ...] | None

    @property
    def option(self) -> str:
        """The flag as typed: ``--prior-components``."""
        return "--" + self.field.replace("_", "-")

    def same_meaning(self, other: Flag) -> bool:
        """Whether ``other`` (another method's field of this name) is the same flag."""
        return (self.kind, self.choices) == (other.kind, other.choices)


_KINDS = (bool, int, float, str)


def flags_of(settings: Any, pinned: Sequence[str] = ()) -> tuple[Flag, ...]:
    """The flags of a settings instance, in field order, without the ``pinned`` fields.

    ``TypeError`` for settings that are not a frozen dataclass instance, or a field that is
    not declared with :func:`flag` or not of a type a flag can carry."""
    if not (dataclasses.is_dataclass(settings) and not isinstance(settings, type)
            and settings.__dataclass_params__.frozen):
        raise TypeError(f"method settings must be a frozen dataclass instance, got {settings!r}")
    hints = typing.get_type_hints(type(settings))
    flags = []
    for field in dataclasses.fields(settings):
        if field.name in pinned:
            continue
        if "help" not in field.metadata:
            raise TypeError(f"settings field {field.name!r} of {type(settings).__name__} is "
                            "not declared with flag(default, help)")
        kinds = [k for k in typing.get_args(hints[field.name]) or (hints[field.name],)
                 if k is not type(None)]  # an optional field: unset is None
        if len(kinds) != 1 or kinds[0] not in _KINDS:
            raise TypeError(f"settings field {field.name!r} is {hints[field.name]}; a flag "
                            f"carries one of {', '.join(k.__name__ for k in _KINDS)}")
        flags.append(Flag(field.name, kinds[0], field.metadata["help"],
                          field.metadata["choices"]))
    return tuple(flags)


def check_types(config: Any, what: str = "setting") -> None:
    """Raise ``ValueError`` for a dataclass field whose value does not have its annotated
    type: an int passes for a float, a bool only for a bool (it is an int to ``isinstance``)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        if hints[field.name] is Any:
            continue
        value = getattr(config, field.name)
        kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
        if isinstance(value, bool):
            ok = bool in kinds
        else:
            ok = isinstance(value, kinds) or (float in kinds and isinstance(value, int))
        if not ok:
            names = " or ".join("None" if k is type(None) else getattr(k, "__name__", str(k))
                                for k in kinds)
            raise ValueError(f"{what} {field.name} = {value!r} is not {names}")


def shown(value: Any) -> str:
    """A setting's value as names show it: a float in the shorter of its plain and exponent
    forms (4e5, not 400000; 100 and 0.2 as they are), the exponent without '+' and leading
    zeros (5e-05 as 5e-5), so that a run directory's name reads as the value it ran."""
    if not isinstance(value, float):
        return str(value)
    plain = f"{value:g}"
    if not math.isfinite(value):  # inf and nan have no exponent form
        return plain
    mantissa, exponent = f"{value:e}".split("e")
    short = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if "e" in plain or (float(short) == value and len(short) < len(plain)):
        return short
    return plain


def changed_fields(settings: Any, base: type) -> str:
    """The fields that ``settings`` adds to its ``base`` class and that differ from their
    defaults, as `` name=value``: how a user's settings class names what it adds."""
    own = {f.name for f in dataclasses.fields(base)}
    parts = []
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name not in own and value != field.default:
            parts.append(f" {field.name}={shown(value)}")
    return "".join(parts)


def as_floats(settings: Any) -> None:
    """Turn the ints given for the float fields of a frozen dataclass into floats, so that
    one value makes one record and one run id (``ewc_lambda=100`` is ``100.0``)."""
    hints = typing.get_type_hints(type(settings))
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(settings, field.name, float(value))


def require_finite(field: str, value: float, positive: bool = False) -> None:
    """``ValueError`` in one line, naming the flag of ``field``, for a value that is not finite
    and >= 0 (> 0 when ``positive``): the check of every strength, weight and temperature."""
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"--{field.replace('_', '-')} must be finite and "
                         f"{'>' if positive else '>='} 0, got {value:g}")


@dataclass(frozen=True)
class MethodSettings:
    """The base of a method's own settings when they are not our replay's (those are
    ``ReplaySettings``): subclass it with fields declared by :func:`flag` and put the checks
    in ``_check``. Values are type-checked, ints given for floats become floats, a value that
    makes no run raises ``ValueError`` in one line, and a table row names the fields that
    differ from their defaults (``ewc ewc_lambda=1e9``)."""

    def __post_init__(self) -> None:
        check_types(self, "setting")
        as_floats(self)
        self._check()

    def _check(self) -> None:
        """``ValueError`` for values that make no run (none here)."""

    def label(self) -> str:
        """The settings in a table row's name, after the method: those off their defaults."""
        return changed_fields(self, MethodSettings)

    def sort_key(self) -> tuple:
        """Where runs of one method sort in a table: field by field, the default first, then
        by value (None before numbers)."""
        key = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            key.append((value != field.default, value is not None,
                        0 if value is None else value))
        return tuple(key)
