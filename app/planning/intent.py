"""What a request asks for beyond its size: documentation only, a review only, a security-sensitive
domain, or a new or split-out service. Whole-token matching, clause by clause."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.planning.text import TokenIndex, tokenize

# Clauses are separated by sentence punctuation, commas, and "and"/"then"/"also" between asks.
_CLAUSE_BREAK = re.compile(r"[.;:!?\n,]+|\b(?:and|then|also|plus)\b", re.IGNORECASE)
# Words skipped before a clause's verb: "please also update ...", "we need to add ...".
_LEADING = frozenset({"please", "kindly", "can", "could", "you", "we", "i", "need", "needs",
                      "want", "would", "like", "to", "should", "must", "let", "us", "lets",
                      "just", "quickly", "carefully", "first", "finally", "now"})  # fmt: skip

DOC_NOUNS = frozenset({
    "readme", "docs", "documentation", "docstring", "docstrings", "guide", "tutorial", "runbook",
    "changelog", "wiki", "user manual", "handbook", "faq", "adr", "glossary", "release notes",
    "api reference", "user guide", "playbook", "onboarding guide", "code comments",
    "architecture decision record", "contributing guide",
})  # fmt: skip
DOC_VERBS = frozenset({"document", "explain", "describe", "proofread", "reword"})
# Signs that the request is about code even when it names a document ("the README renderer").
CODE_SIGNS = frozenset({"crash", "crashes", "exception", "traceback", "deadlock", "regression",
                        "failing", "fails", "segfault", "renderer", "site",
                        "website", "search box", "plugin", "widget"})  # fmt: skip
CHANGE_VERBS = frozenset({
    "add", "implement", "build", "create", "fix", "change", "update", "refactor", "remediate",
    "patch", "rewrite", "migrate", "deploy", "remove", "delete", "replace", "improve", "harden",
    "optimise", "optimize", "introduce", "enable", "support", "make", "rename", "extract",
    "split", "move", "convert", "upgrade", "integrate", "set", "configure", "write", "resolve",
    "repair", "speed", "reduce", "increase", "allow", "drop", "ship", "develop", "port",
})  # fmt: skip
REVIEW_VERBS = frozenset({"review", "audit", "assess", "evaluate", "inspect", "examine",
                          "critique", "code-review"})  # fmt: skip
# "perform a review", "do a security audit": a neutral verb whose object is a review.
REVIEW_NOUNS = frozenset({"review", "audit", "assessment", "evaluation", "inspection",
                          "threat model"})  # fmt: skip
_REVIEW_LEADS = frozenset({"do", "perform", "conduct", "run", "carry", "give", "provide"})
# "write up the findings", "write a report": writing that is part of a review, not a change.
_REPORT_OBJECTS = frozenset({"up", "report", "summary", "findings", "notes", "feedback"})

SENSITIVE_DOMAINS: dict[str, tuple[str, ...]] = {
    "authentication": ("auth", "authentication", "login", "logins", "log in", "log-in", "logout",
                       "log out", "logged in", "logged out", "sign in", "sign-in", "signin",
                       "signup", "sign-up", "oauth", "oauth2", "sso", "saml", "oidc", "openid",
                       "2fa", "mfa", "totp", "password", "passwords", "passwordless",
                       "session cookie", "session cookies"),
    "access control": ("authorization", "authorisation", "permission", "permissions",
                       "role-based", "rbac", "abac", "acl", "acls", "access control",
                       "privilege", "privileges", "row-level security", "admin-only", "role",
                       "roles", "admin role", "authorize", "authorise", "unauthorized",
                       "unauthorised", "access rights", "restrict access"),
    "payments": ("payment", "payments", "billing", "checkout", "stripe", "paypal", "braintree",
                 "credit card", "credit cards", "card details", "pci", "refund", "refunds"),
    "secrets": ("secret", "secrets", "credential", "credentials", "vault", "api key",
                "api keys", "private key", "private keys", "ssh key", "ssh keys", "kms"),
    "tokens": ("token", "tokens", "jwt", "jwts", "access token", "refresh token", "bearer"),
    "encryption": ("encrypt", "encrypted", "encryption", "decrypt", "decryption", "tls", "ssl",
                   "certificate", "certificates", "cipher", "crypto", "cryptography", "hmac",
                   "e2e encryption"),
    "security": ("security", "csrf", "xss", "injection", "vulnerability", "vulnerabilities"),
}  # fmt: skip

SERVICE_NOUNS = ("service", "services", "microservice", "microservices", "micro-service",
                 "micro-services")  # fmt: skip
# Words that, next to a service noun (or as the request's verb), say one is created or split out.
SERVICE_MAKERS = frozenset({"new", "separate", "standalone", "own", "dedicated", "independent",
                            "create", "build", "split", "extract", "carve", "spin", "break",
                            "decompose", "introduce", "develop", "stand"})  # fmt: skip
_MAKER_WINDOW = 3
_SPLIT_VERBS = frozenset({"split", "extract", "carve", "break", "decompose", "spin"})


@dataclass(frozen=True)
class Intent:
    """The request's kind and the domains it touches, with the words that showed each."""

    docs_only: bool
    review_only: bool
    sensitive: tuple[tuple[str, tuple[str, ...]], ...]
    service: tuple[str, ...]


def clauses(text: str) -> list[tuple[str, ...]]:
    """The request's clauses as token tuples, leading filler words dropped; empty ones skipped."""
    found = []
    for part in _CLAUSE_BREAK.split(text):
        tokens = list(tokenize(part))
        while tokens and tokens[0] in _LEADING:
            tokens.pop(0)
        if tokens:
            found.append(tuple(tokens))
    return found


def _has(tokens: tuple[str, ...], terms: frozenset[str]) -> bool:
    index = TokenIndex(" ".join(tokens))
    return bool(index.find(terms))


def _is_doc_clause(tokens: tuple[str, ...]) -> bool:
    return tokens[0] in DOC_VERBS or _has(tokens, DOC_NOUNS)


def _is_change_clause(tokens: tuple[str, ...]) -> bool:
    verb = tokens[0]
    if verb == "write" and len(tokens) > 1 and tokens[1] in _REPORT_OBJECTS:
        return False
    if verb == "write" and _has(tokens, _REPORT_OBJECTS - {"up"}):
        return False
    return verb in CHANGE_VERBS


def _is_review_clause(tokens: tuple[str, ...]) -> bool:
    if tokens[0] in REVIEW_VERBS:
        return True
    return tokens[0] in _REVIEW_LEADS and _has(tokens[:5], REVIEW_NOUNS)


def docs_only(parts: list[tuple[str, ...]], index: TokenIndex) -> bool:
    """Every ask is about documents: a doc verb or noun in each changing clause, no code signs."""
    if not parts or index.find(CODE_SIGNS):
        return False
    docs = [_is_doc_clause(part) for part in parts]
    code = [_is_change_clause(part) and not doc for part, doc in zip(parts, docs, strict=True)]
    return any(docs) and not any(code)


def review_only(parts: list[tuple[str, ...]]) -> bool:
    """The request opens with a review and no clause asks for a change."""
    if not parts or not _is_review_clause(parts[0]):
        return False
    return not any(_is_change_clause(part) for part in parts[1:])


def sensitive_domains(index: TokenIndex) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each security-sensitive domain the request names, with the words that named it."""
    found = ((domain, tuple(index.find(terms))) for domain, terms in SENSITIVE_DOMAINS.items())
    return tuple((domain, words) for domain, words in found if words)


def service_words(index: TokenIndex) -> tuple[str, ...]:
    """The words showing that a service is created or split out (empty when none is)."""
    tokens = index.tokens
    lead = index.first_token
    for position, token in enumerate(tokens):
        if token not in SERVICE_NOUNS:
            continue
        window = tokens[max(0, position - _MAKER_WINDOW) : position]
        makers = [word for word in window if word in SERVICE_MAKERS]
        if makers:
            return (makers[-1], token)
        if lead in SERVICE_MAKERS:
            return (lead, token)
    if lead in _SPLIT_VERBS and index.contains("monolith"):
        return (lead, "monolith")
    return ()


def read_intent(text: str) -> Intent:
    """The request's kind (docs only, review only), sensitive domains and service creation."""
    index = TokenIndex(text)
    parts = clauses(text)
    review = review_only(parts)
    return Intent(
        docs_only=not review and docs_only(parts, index),
        review_only=review,
        sensitive=sensitive_domains(index),
        service=() if review else service_words(index),
    )
