"""A policy's stage preference as data: content kind -> groups of stage entries (:class:`Preferences`).

The table a policy file spells as ``[preferences]`` (:mod:`inverity.policy`) and the router reads
(:mod:`inverity.route`): one place for its shape, its validation and the entry syntax (``"jpegls?near=2"``).
"""
from __future__ import annotations

from typing import Any, Mapping

from .errors import PolicyError

__all__ = ["Group", "Preferences", "parse_entry", "check_preferences"]

#: a preference group: stage entries (a codec id, optionally with options: ``"jpegls?near=2"``) that compete
Group = tuple[str, ...]


def parse_entry(entry: str) -> tuple[str, dict[str, Any]]:
    """A preference entry as (codec id, options): integers and true/false are typed, the rest stay strings.

    Examples
    --------
    >>> parse_entry("jpegls?near=2"), parse_entry("png")
    (('jpegls', {'near': 2}), ('png', {}))
    """
    cid, _, rest = entry.partition("?")
    opts: dict[str, Any] = {}
    for kv in filter(None, rest.split("&")):
        k, _, v = kv.partition("=")
        opts[k] = int(v) if v.lstrip("-").isdigit() else {"true": True, "false": False}.get(v, v)
    return cid, opts


class Preferences(Mapping[str, tuple[Group, ...]]):
    """A policy's stage preference: content kind -> groups of entries, ``"*"`` for every kind not named.

    Candidates in one group are equivalent choices (the smallest passing wins); a later group is a fallback
    for when nothing in the earlier ones passes (:mod:`inverity.route`). Immutable; built from a validated
    ``[preferences]`` table (:class:`Policy` checks kinds, shapes and codec ids).

    Examples
    --------
    >>> p = Preferences({"*": [["avif"], ["png"]], "drawing": [["png", "webp-lossless"]]})
    >>> p.for_kind("drawing"), p.for_kind("photo")
    ((('png', 'webp-lossless'),), (('avif',), ('png',)))
    """

    __slots__ = ("_table",)

    def __init__(self, table: Mapping[str, Any]) -> None:
        self._table: dict[str, tuple[Group, ...]] = {str(k): tuple(tuple(g) for g in v) for k, v in table.items()}

    def __getitem__(self, kind: str) -> tuple[Group, ...]:
        return self._table[kind]

    def __iter__(self) -> Any:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._table.items())))

    def __repr__(self) -> str:
        return f"Preferences({self._table!r})"

    def __reduce__(self) -> Any:          # picklable (policies cross into engine workers)
        return (Preferences, (self._table,))

    def for_kind(self, kind: str) -> tuple[Group, ...]:
        """The groups for ``kind``, else the ``"*"`` default."""
        return self._table.get(kind, self._table["*"])

    def to_dict(self) -> dict[str, list[list[str]]]:
        """The TOML/JSON form: kind -> list of groups (lists of entries)."""
        return {k: [list(g) for g in v] for k, v in self._table.items()}


def check_preferences(name: str, table: Any, known: set[str]) -> Preferences:
    """A validated :class:`Preferences` from a ``[preferences]`` table (``known``: the valid codec ids); a one-line
    :class:`PolicyError` naming the key otherwise (the policy loader prefixes the file).

    Examples
    --------
    >>> check_preferences("x", {"*": [["png"]], "photos": [["jpeg"]]}, {"png", "jpeg"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inverity.errors.PolicyError: policy x: preferences: unknown content kind 'photos'; known: photo, ...
    """
    if not isinstance(table, Mapping):
        raise PolicyError(f"policy {name}: preferences must be a table (content kind -> list of groups of stage "
                          f"ids), got {type(table).__name__}")
    from .analyse import KINDS   # here, not at the top: analyse is a sibling this pure-data module need not load

    bad = [k for k in table if k != "*" and k not in KINDS]
    if bad:
        raise PolicyError(f"policy {name}: preferences: unknown content kind{'s' if len(bad) > 1 else ''} "
                          f"{', '.join(map(repr, bad))}; known: {', '.join(KINDS)} and \"*\" (any other kind)")
    if "*" not in table:
        raise PolicyError(f"policy {name}: preferences needs a \"*\" entry (the groups for every kind not named)")
    for kind, groups in table.items():
        key = f"preferences.{kind}" if kind != "*" else 'preferences."*"'
        if isinstance(groups, (list, tuple)) and groups and all(isinstance(g, str) for g in groups):
            raise PolicyError(f"policy {name}: {key} must be a list of groups, each a list of stage ids: "
                              f"[{', '.join(f'[{g!r}]' for g in groups)}] tries them in turn, "
                              f"[[{', '.join(map(repr, groups))}]] keeps the smallest that passes")
        if not isinstance(groups, (list, tuple)) or not groups:
            raise PolicyError(f"policy {name}: {key} must be a non-empty list of groups (each a list of stage ids), "
                              f"got {groups!r}")
        for g in groups:
            if not isinstance(g, (list, tuple)) or not g or not all(isinstance(e, str) for e in g):
                raise PolicyError(f"policy {name}: {key}: each group must be a non-empty list of stage ids, got {g!r}")
            unknown = [e for e in g if parse_entry(e)[0] not in known]
            if unknown:
                raise PolicyError(f"policy {name}: {key}: unknown stage{'s' if len(unknown) > 1 else ''} "
                                  f"{', '.join(map(repr, unknown))}; available: {', '.join(sorted(known))}")
            ids = [parse_entry(e)[0] for e in g]
            same = sorted({i for i in ids if ids.count(i) > 1})
            if same:  # the search tells a group's attempts apart by stage id: one entry per stage and group
                raise PolicyError(f"policy {name}: {key}: a group lists stage {same[0]!r} more than once "
                                  f"({', '.join(repr(e) for e in g if parse_entry(e)[0] == same[0])}); put the "
                                  "variants in groups of their own")
        entries = [e for g in groups for e in g]
        twice = sorted({e for e in entries if entries.count(e) > 1})
        if twice:
            raise PolicyError(f"policy {name}: {key} lists {', '.join(map(repr, twice))} twice")
    return table if isinstance(table, Preferences) else Preferences(table)
