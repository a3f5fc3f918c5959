"""The dashboard's status colours and the WCAG 2.x contrast they are held to."""

from __future__ import annotations

# status -> (fill, text on it). Sessions and tasks share names where they mean the same.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "pending": ("#d0d4da", "#1b1f24"),
    "ready": ("#bcd7f5", "#0b2540"),
    "queued": ("#bcd7f5", "#0b2540"),
    "assigned": ("#7fb2e8", "#0b2540"),
    "in_progress": ("#1f6fc5", "#ffffff"),
    "running": ("#1f6fc5", "#ffffff"),
    "blocked": ("#f0a14a", "#2b1600"),
    "paused": ("#f5d76e", "#2e2500"),
    "degraded": ("#f0a14a", "#2b1600"),
    "completed": ("#1e7b34", "#ffffff"),
    "partially_completed": ("#8fc99b", "#0f2d16"),
    "failed": ("#b42318", "#ffffff"),
    "timeout": ("#8e1b57", "#ffffff"),
    "stopped": ("#5b6370", "#ffffff"),
    "cancelled": ("#3d434b", "#ffffff"),
    "skipped": ("#e8c6de", "#3a0f2f"),
    "orphaned": ("#6b3fa0", "#ffffff"),
}
UNKNOWN = ("#ffffff", "#1b1f24")  # a status this build does not know yet: outlined, not filled
PAGE = ("#ffffff", "#1b1f24")  # background, body text
MUTED_TEXT = "#4a525c"
LINK = "#0b5cad"
FOCUS = "#0b5cad"
MIN_CONTRAST = 4.5  # WCAG AA, normal text


def colours_of(status: str) -> tuple[str, str]:
    """(fill, text) of a status."""
    return STATUS_COLOURS.get(status, UNKNOWN)


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    """The relative luminance of an sRGB colour `#rrggbb`."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(one: str, other: str) -> float:
    """The WCAG contrast ratio of two colours, 1 to 21."""
    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def css() -> str:
    """CSS rules for every status (`.status-<name>` badges, and the Gantt's run bars)."""
    rules = [f".status-{name}{{background:{fill};color:{text}}}"
             for name, (fill, text) in STATUS_COLOURS.items()]  # fmt: skip
    return "\n".join(rules)
