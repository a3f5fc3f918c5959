"""Pick ONE template per request by a scored whole-word keyword match."""

from __future__ import annotations

from dataclasses import dataclass

from app.planning.template_model import Template
from app.planning.templates import FEATURE, TEMPLATES
from app.planning.text import TokenIndex

LEAD_VERB_BONUS = 3


@dataclass(frozen=True)
class TemplateScore:
    """How well one template matched: its score and the words that earned it."""

    template: Template
    score: int
    matched: tuple[str, ...]

    def describe(self) -> str:
        """E.g. "bug_fix (score 5: lead verb 'fix', crash)"."""
        words = ", ".join(self.matched) or "no keywords"
        return f"{self.template.name} (score {self.score}: {words})"


def score_templates(index: TokenIndex) -> list[TemplateScore]:
    """Every template's keyword score, best first (ties broken by TEMPLATES order)."""
    scores = []
    for template in TEMPLATES:
        if template.requires_any and not index.find(template.requires_any):
            needed = "/".join(sorted(template.requires_any))
            scores.append(TemplateScore(template, 0, (f"needs one of {needed}",)))
            continue
        matched = index.find(template.keywords)
        score = sum(template.keywords[word] for word in matched)
        labels = list(matched)
        if index.first_token in template.lead_verbs:
            score += LEAD_VERB_BONUS
            labels.insert(0, f"lead verb '{index.first_token}'")
        scores.append(TemplateScore(template, score, tuple(labels)))
    order = {template.name: position for position, template in enumerate(TEMPLATES)}
    return sorted(scores, key=lambda s: (-s.score, order[s.template.name]))


def select_template(index: TokenIndex) -> tuple[Template, list[TemplateScore]]:
    """The best-scoring template (`feature` when nothing matches) and all scores."""
    scores = score_templates(index)
    best = scores[0] if scores[0].score > 0 else next(s for s in scores if s.template is FEATURE)
    return best.template, scores
