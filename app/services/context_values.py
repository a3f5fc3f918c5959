"""Pure operations on context values: merge by strategy, resolve conflicts, diff, fit a budget."""

from __future__ import annotations

import copy
import json
from typing import Any

STRATEGIES = ("last_write_wins", "deep_merge", "prefer_source", "prefer_target", "manual")
ELLIPSIS = "…"


def pointer(tokens: list[str]) -> str:
    """The RFC 6901 JSON Pointer of a path ("" for the whole value)."""
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in tokens)


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not a JSON pointer (it must start with '/')")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def merge_values(
    target: Any, source: Any, strategy: str, *, source_is_newer: bool = True
) -> tuple[Any, list[dict[str, Any]]]:
    """Merge `source` into `target`; return (merged, conflicts).

    last_write_wins keeps the newer value whole. deep_merge merges objects key by key, appends
    new list items, and lets the source win other clashes; prefer_source / prefer_target merge
    objects key by key and let that side win every clash (lists included). manual merges what
    does not clash and reports each clash ({path, source, target}), keeping the target there.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown merge strategy {strategy!r}")
    if strategy == "last_write_wins":
        return copy.deepcopy(source if source_is_newer else target), []
    conflicts: list[dict[str, Any]] = []
    merged = _merge(target, source, strategy, [], conflicts)
    return merged, conflicts


def _merge(target: Any, source: Any, strategy: str, path: list[str], conflicts: list) -> Any:
    if isinstance(target, dict) and isinstance(source, dict):
        merged = copy.deepcopy(target)
        for key, value in source.items():
            if key in target:
                merged[key] = _merge(target[key], value, strategy, [*path, key], conflicts)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if target == source:
        return copy.deepcopy(target)
    if strategy == "deep_merge" and isinstance(target, list) and isinstance(source, list):
        return copy.deepcopy(target) + [copy.deepcopy(v) for v in source if v not in target]
    if strategy == "manual":
        conflicts.append({"path": pointer(path), "source": source, "target": target})
        return copy.deepcopy(target)
    return copy.deepcopy(target if strategy == "prefer_target" else source)


def resolve(
    merged: Any,
    conflicts: list[dict[str, Any]],
    resolutions: dict[str, Any],
    default: str | None = None,
) -> Any:
    """Settle a manual merge: each conflict takes its resolution, else the `default` side.

    Raises ValueError naming the conflicts left open or paths that are not conflicts.
    """
    open_paths = {conflict["path"]: conflict for conflict in conflicts}
    unknown = sorted(set(resolutions) - set(open_paths))
    if unknown:
        raise ValueError(f"not conflicts of this merge: {', '.join(unknown)}")
    unresolved = [path for path in open_paths if path not in resolutions and default is None]
    if unresolved:
        raise ValueError(f"conflicts left unresolved: {', '.join(unresolved)}")
    value = copy.deepcopy(merged)
    # Shorter paths first, so a resolution of a parent never overwrites a child's.
    for path in sorted(open_paths, key=lambda p: len(_tokens(p))):
        chosen = resolutions[path] if path in resolutions else open_paths[path][default]
        value = _set(value, _tokens(path), copy.deepcopy(chosen))
    return value


def _set(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    node = document
    for token in tokens[:-1]:
        node = node[token]
    node[tokens[-1]] = value
    return document


def diff_values(old: Any, new: Any, path: list[str] | None = None) -> list[dict[str, Any]]:
    """Changes from `old` to `new`: added, removed and changed JSON Pointer paths."""
    path = path or []
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in old:
            if key not in new:
                changes.append({"op": "removed", "path": pointer([*path, key]), "old": old[key]})
            else:
                changes.extend(diff_values(old[key], new[key], [*path, key]))
        for key in new:
            if key not in old:
                changes.append({"op": "added", "path": pointer([*path, key]), "new": new[key]})
        return changes
    if old == new and type(old) is type(new):
        return []
    return [{"op": "changed", "path": pointer(path), "old": old, "new": new}]


def same(first: Any, second: Any) -> bool:
    """Equal as JSON (so true is not 1 and 1.0 is not "1")."""
    return json.dumps(first, sort_keys=True, default=str) == json.dumps(
        second, sort_keys=True, default=str
    )


def size(value: Any) -> int:
    """Characters of `value` as compact JSON."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def shrink(value: Any, limit: int) -> Any:
    """`value` with strings cut to `limit` characters and lists to about limit/8 items."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + ELLIPSIS
    if isinstance(value, dict):
        return {key: shrink(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        keep = max(1, limit // 8)
        items = [shrink(item, limit) for item in value[:keep]]
        return items + ([f"{ELLIPSIS} {len(value) - keep} more"] if len(value) > keep else [])
    return value


def _longest(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((_longest(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return max([len(value) * 8, *(_longest(item) for item in value)])
    return 0


def fit(sections: dict[str, dict[str, Any]], budget: int, drop_order: list[tuple[str, str]]):
    """Trim {section: {name: value}} to `budget` JSON characters; return (fitted, omitted).

    Values are shortened evenly first; entries are dropped in `drop_order` only when even the
    shortest form does not fit.
    """
    sections = {name: dict(entries) for name, entries in sections.items()}
    omitted: list[str] = []
    if size(sections) <= budget:
        return sections, omitted
    for section, name in drop_order:
        if size(shrink(sections, 0)) <= budget:
            break
        if name in sections[section]:
            del sections[section][name]
            omitted.append(f"{section}.{name}")
    low, high = 0, _longest(sections)
    if size(shrink(sections, low)) > budget:
        return {name: {} for name in sections}, omitted + [
            f"{section}.{name}" for section, entries in sections.items() for name in entries
        ]
    while low < high:
        middle = (low + high + 1) // 2
        if size(shrink(sections, middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    return shrink(sections, low), omitted
