"""Pick ONE template per request by a scored whole-word keyword match."""

from __future__ import annotations

from dataclasses import dataclass

from app.planning.intent import Intent
from app.planning.template_model import Template
from app.planning.templates import (
    CODE_REVIEW,
    DOCUMENTATION,
    FEATURE,
    SECURITY_AUDIT,
    SECURITY_REVIEW,
    TEMPLATES,
)
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


def template_for_intent(
    chosen: Template, scores: list[TemplateScore], intent: Intent
) -> tuple[Template, str]:
    """The template for the request's kind, and the reason that names the choice.

    Review-only requests get a review template (security_review when a security-sensitive
    domain or a security keyword is named), documentation-only ones the documentation template;
    a request that also changes code never gets the documentation template.
    """
    by_score = _describe(chosen, scores)
    if intent.review_only:
        security = intent.sensitive or any(
            s.template is SECURITY_AUDIT and s.score > 0 for s in scores
        )
        template = SECURITY_REVIEW if security else CODE_REVIEW
        return template, (
            f"template {template.name}: review-only request (it asks for a review and no "
            f"change), so no implementation or deployment; keyword scores chose {by_score}"
        )
    if intent.docs_only:
        note = "" if chosen is DOCUMENTATION else f"; keyword scores chose {by_score}"
        return DOCUMENTATION, (
            f"template {DOCUMENTATION.name}: documentation-only request, so no "
            f"implementation or deployment{note}"
        )
    if chosen is DOCUMENTATION:
        other = next((s for s in scores if s.template is not DOCUMENTATION and s.score > 0), None)
        template = other.template if other else FEATURE
        return template, (
            f"template {template.name}: the request also changes code, so not documentation "
            f"({by_score})"
        )
    return chosen, by_score_reason(chosen, scores)


def _describe(chosen: Template, scores: list[TemplateScore]) -> str:
    score = next(s for s in scores if s.template is chosen)
    return score.describe() if score.score else f"{chosen.name} (fallback)"


def by_score_reason(template: Template, scores: list[TemplateScore]) -> str:
    """Why keyword scores chose `template`: its score and the runner-up."""
    chosen = next(score for score in scores if score.template is template)
    if chosen.score == 0:
        return f"template {template.name}: fallback, no template keywords matched"
    others = [score for score in scores if score.template is not template and score.score > 0]
    runner_up = f"; runner-up {others[0].describe()}" if others else ""
    return f"template {chosen.describe()}{runner_up}"
