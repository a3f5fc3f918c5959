"""PERT estimates, complexity levels ordered by rank, and the size signals read from a request."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from app.planning.errors import PlanningError
from app.planning.text import TokenIndex


class ComplexityLevel(Enum):
    """How big a task is; ordered by rank (trivial < ... < expert), never by its string value."""

    TRIVIAL = "trivial"
    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"
    EXPERT = "expert"

    @property
    def rank(self) -> int:
        """0 for trivial up to 4 for expert."""
        return _RANKS[self]

    @property
    def upper_hours(self) -> float:
        """Expected hours at which a task stops being this level (exclusive bound)."""
        return _UPPER_HOURS[self]

    @classmethod
    def parse(cls, value: ComplexityLevel | str) -> ComplexityLevel:
        """The level named by `value` (case-insensitive), or PlanningError."""
        if isinstance(value, cls):
            return value
        level = _BY_VALUE.get(value.strip().casefold()) if isinstance(value, str) else None
        if level is not None:
            return level
        names = ", ".join(level.value for level in cls)
        raise PlanningError(f"unknown complexity level {value!r}; expected one of: {names}")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ComplexityLevel):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, ComplexityLevel):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, ComplexityLevel):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, ComplexityLevel):
            return NotImplemented
        return self.rank >= other.rank


_RANKS = {level: rank for rank, level in enumerate(ComplexityLevel)}
_BY_VALUE = {level.value: level for level in ComplexityLevel}
_UPPER_HOURS = {
    ComplexityLevel.TRIVIAL: 0.25,
    ComplexityLevel.SIMPLE: 1.0,
    ComplexityLevel.MODERATE: 4.0,
    ComplexityLevel.COMPLEX: 8.0,
    ComplexityLevel.EXPERT: math.inf,
}


def pert_expected(optimistic: float, likely: float, pessimistic: float) -> float:
    """PERT expected duration: (o + 4m + p) / 6."""
    return (optimistic + 4 * likely + pessimistic) / 6


def level_for_hours(hours: float) -> ComplexityLevel:
    """The level of an expected duration: trivial <0.25, simple <1, moderate <4, complex <8."""
    if not isinstance(hours, int | float) or not math.isfinite(hours) or hours < 0:
        raise PlanningError(f"expected hours must be a finite non-negative number, got {hours!r}")
    return next(level for level in ComplexityLevel if hours < level.upper_hours)


@dataclass(frozen=True)
class Estimate:
    """Optimistic / likely / pessimistic hours (rounded to 0.01 h) and what follows from them."""

    optimistic_hours: float
    likely_hours: float
    pessimistic_hours: float

    def __post_init__(self) -> None:
        values = (self.optimistic_hours, self.likely_hours, self.pessimistic_hours)
        if not all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in values):
            raise PlanningError(f"estimate hours must be finite and non-negative, got {values}")
        if not self.optimistic_hours <= self.likely_hours <= self.pessimistic_hours:
            raise PlanningError(f"estimate needs optimistic <= likely <= pessimistic, got {values}")

    @classmethod
    def from_hours(cls, optimistic: float, likely: float, pessimistic: float) -> Estimate:
        """An estimate with each figure rounded to 0.01 h (at least 0.01 h)."""
        return cls(*(max(round(hours, 2), 0.01) for hours in (optimistic, likely, pessimistic)))

    @property
    def expected_hours(self) -> float:
        """PERT expected hours, rounded to 0.001 h; the level is derived from this figure."""
        return round(pert_expected(*self.hours), 3)

    @property
    def hours(self) -> tuple[float, float, float]:
        """(optimistic, likely, pessimistic)."""
        return (self.optimistic_hours, self.likely_hours, self.pessimistic_hours)

    @property
    def level(self) -> ComplexityLevel:
        """The complexity level of the expected hours."""
        return level_for_hours(self.expected_hours)

    def scaled(self, factor: float) -> Estimate:
        """This estimate with every figure multiplied by `factor`."""
        return Estimate.from_hours(*(hours * factor for hours in self.hours))

    def to_dict(self) -> dict[str, float | str]:
        """The estimate as it appears in a DAG spec task."""
        return {
            "optimistic_hours": self.optimistic_hours,
            "likely_hours": self.likely_hours,
            "pessimistic_hours": self.pessimistic_hours,
            "expected_hours": self.expected_hours,
            "level": self.level.value,
        }


# Scope words shrink or grow every estimate; risk words widen the pessimistic side.
SCOPE_FACTORS = {
    "typo": 0.1, "typos": 0.15, "one-line": 0.3, "tiny": 0.4, "trivial": 0.4, "small": 0.6,
    "minor": 0.6,
    "quick": 0.7, "simple": 0.7, "single": 0.8, "large": 1.4, "major": 1.4, "entire": 1.5,
    "whole": 1.4, "complete": 1.3, "comprehensive": 1.4, "full": 1.2, "end-to-end": 1.3,
    "platform": 1.4, "across": 1.3, "overhaul": 1.5, "rewrite": 1.5, "rename": 0.3,
    "tweak": 0.5, "bump": 0.4, "wording": 0.4, "spelling": 0.1, "misspelled": 0.1,
    "misspelling": 0.1, "tooltip": 0.2, "placeholder": 0.3, "label": 0.5, "little": 0.6,
    "slightly": 0.6, "off-by-one": 0.5, "one-liner": 0.3, "broken link": 0.3,
    "broken links": 0.3, "dead link": 0.3, "dead links": 0.3, "log message": 0.5,
    "error message": 0.6, "version number": 0.4, "colour": 0.25, "color": 0.25,
    "changelog": 0.5, "health check": 0.3,
}  # fmt: skip
RISK_FACTORS = {
    "migration": 1.3, "migrate": 1.3, "distributed": 1.5, "security": 1.3, "concurrency": 1.4,
    "concurrent": 1.4, "race condition": 1.4, "real-time": 1.3, "realtime": 1.3,
    "encryption": 1.3, "legacy": 1.3, "multi-tenant": 1.4, "sharding": 1.5,
    "zero-downtime": 1.5, "payment": 1.3, "payments": 1.3, "compliance": 1.3, "gdpr": 1.3,
    "production": 1.2, "microservice": 1.3, "microservices": 1.3, "high availability": 1.4,
}  # fmt: skip

# Components a request may touch: slug -> (label, words that name it).
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "api": ("API", ("api", "apis", "endpoint", "endpoints", "rest api", "rest apis", "restful",
                     "graphql", "grpc", "route")),
    "data": ("data layer", ("database", "db", "schema", "model", "models", "table", "tables",
                            "crud", "orm", "sql", "postgres", "postgresql", "mysql", "sqlite")),
    "ui": ("user interface", ("ui", "frontend", "front-end", "front end", "user interface",
                              "page", "pages", "screen", "dashboard", "form", "forms", "react",
                              "vue", "angular", "css", "mobile", "ios", "android", "theme",
                              "dark mode", "layout", "button", "buttons", "modal")),
    "auth": ("authentication", ("auth", "authentication", "authorization", "login", "oauth",
                                "oauth2", "sso", "jwt", "password", "passwords", "rbac")),
    "cache": ("caching", ("cache", "caching", "redis", "memcached")),
    "jobs": ("background jobs", ("queue", "queues", "worker", "workers", "celery", "kafka",
                                 "cron", "scheduler")),
    "search": ("search", ("search", "elasticsearch", "opensearch")),
    "notifications": ("notifications", ("notification", "notifications", "email", "emails",
                                        "sms", "push")),
    "payments": ("payments", ("payment", "payments", "billing", "stripe", "invoice", "invoices")),
    "storage": ("file storage", ("upload", "uploads", "s3", "storage", "attachments")),
    "reporting": ("reporting", ("report", "reports", "export", "csv", "analytics")),
    "cli": ("command line", ("cli", "command-line", "command line")),
}  # fmt: skip

MIN_SCALE, MAX_SCALE, MAX_RISK = 0.05, 3.0, 3.0

# Breadth: a request of few content words asks for less than one that lists many things.
# factor = 0.4 + 0.06 per content word, within [0.7, 1.4]: 5 words x0.7, 10 x1.0, 17+ x1.4.
BREADTH_BASE, BREADTH_PER_WORD, MIN_BREADTH, MAX_BREADTH = 0.4, 0.06, 0.7, 1.4
STOPWORDS = frozenset({
    "a", "an", "the", "to", "of", "in", "on", "for", "and", "or", "with", "from", "into", "at",
    "by", "is", "are", "be", "been", "it", "its", "this", "that", "these", "those", "so", "as",
    "when", "all", "our", "we", "i", "please", "should", "must", "can", "could", "each", "every",
    "any", "some", "my", "your", "their", "them", "they", "there", "which", "who", "not", "no",
    "but", "if", "then", "than", "also", "up", "out", "about", "via", "per", "new", "just",
    "only", "more", "get", "gets", "do", "does", "use", "using", "make", "sure", "will", "now",
    "after", "before", "us", "me", "you", "has", "have", "was", "were", "while", "without",
})  # fmt: skip


@dataclass(frozen=True)
class RequestProfile:
    """Deterministic size signals of a request: scope scale, risk, and the components it names."""

    scale: float
    risk: float
    components: tuple[str, ...]
    signals: tuple[str, ...]

    def estimate(
        self, base: tuple[float, float, float], *, per_component: bool = False
    ) -> Estimate:
        """A step's base (o, m, p) hours adjusted for scope, risk and optionally component count."""
        optimistic, likely, pessimistic = base
        factor = self.scale
        if per_component and len(self.components) > 1:
            factor *= 1 + 0.4 * (len(self.components) - 1)
        likely_risk = 1 + (self.risk - 1) / 2
        return Estimate.from_hours(
            optimistic * factor, likely * factor * likely_risk, pessimistic * factor * self.risk
        )


def analyze_request(text: str) -> RequestProfile:
    """Read scope words, risk keywords and named components from a request."""
    index = TokenIndex(text)
    signals = []
    scale = 1.0
    for word in index.find(SCOPE_FACTORS):
        scale *= SCOPE_FACTORS[word]
        signals.append(f"scope '{word}' x{SCOPE_FACTORS[word]}")
    risk = 1.0
    for word in index.find(RISK_FACTORS):
        risk *= RISK_FACTORS[word]
        signals.append(f"risk '{word}' x{RISK_FACTORS[word]}")
    breadth = breadth_factor(index.tokens)
    if breadth != 1.0:
        scale *= breadth
        signals.append(f"breadth {content_words(index.tokens)} content word(s) x{breadth}")
    first_seen = {}
    for slug, (_, words) in COMPONENTS.items():
        found = index.find(words)
        if found:
            first_seen[slug] = index.first_position(found[0])
    components = tuple(sorted(first_seen, key=lambda slug: (first_seen[slug], slug)))
    if components:
        signals.append(f"{len(components)} component(s): {', '.join(components)}")
    scale = min(max(scale, MIN_SCALE), MAX_SCALE)
    risk = min(risk, MAX_RISK)
    return RequestProfile(round(scale, 3), round(risk, 3), components, tuple(signals))


def component_label(slug: str) -> str:
    """A readable name for a component slug."""
    return COMPONENTS[slug][0] if slug in COMPONENTS else slug.replace("-", " ")


def content_words(tokens: tuple[str, ...]) -> int:
    """How many tokens are neither stop words nor scope words (numbers count: they name things)."""
    return sum(token not in STOPWORDS and token not in SCOPE_FACTORS for token in tokens)


def breadth_factor(tokens: tuple[str, ...]) -> float:
    """The breadth factor of a request's tokens (see BREADTH_BASE)."""
    factor = BREADTH_BASE + BREADTH_PER_WORD * content_words(tokens)
    return round(min(max(factor, MIN_BREADTH), MAX_BREADTH), 2)
