"""Deterministic, realistic synthetic records for the demo services, each with its own shape."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

FIRST = ["Maya", "Noam", "Lea", "Omar", "Dana", "Yuki", "Ines", "Tom", "Aria", "Ravi", "Sara", "Ilya"]
LAST = ["Cohen", "Levi", "Silva", "Tanaka", "Novak", "Haddad", "Berg", "Okafor", "Rossi", "Kaur"]
COURSES = [
    "Intro to Rust",
    "Data Structures",
    "Linear Algebra",
    "Cloud Security",
    "Distributed Systems",
    "Machine Learning Basics",
    "Database Internals",
    "Modern JavaScript",
    "Statistics for Engineers",
]
TOPICS = [
    "recursion",
    "hash maps",
    "eigenvalues",
    "TLS handshakes",
    "consensus",
    "gradient descent",
    "B-trees",
    "promises",
    "hypothesis tests",
    "ownership and borrowing",
    "caching",
    "indexes",
]
COUNTRIES = ["Israel", "Germany", "Brazil", "Japan", "India", "Canada", "Kenya", "Italy"]


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _payment(i: int, rng: random.Random) -> dict[str, Any]:
    status = rng.choice(["completed", "completed", "completed", "refunded", "failed", "pending"])
    course = rng.choice(COURSES)
    amount = round(rng.uniform(9, 499), 2)
    reasons = {
        "completed": f"Enrollment fee for the course {course}, paid in full.",
        "refunded": f"Refund for {course}: the learner withdrew in the first week.",
        "failed": f"Card declined while paying for {course}; the learner was asked to retry.",
        "pending": f"Bank transfer for {course} awaiting confirmation.",
    }
    return {
        "id": f"pay_{i:06d}",
        "amount": amount,
        "currency": rng.choice(["USD", "EUR", "ILS"]),
        "status": status,
        "method": rng.choice(["card", "bank_transfer", "paypal"]),
        "customer": {"name": _name(rng), "country": rng.choice(COUNTRIES)},
        "description": reasons[status],
    }


def _assessment(i: int, rng: random.Random) -> dict[str, Any]:
    topic, course = rng.choice(TOPICS), rng.choice(COURSES)
    score = rng.randint(35, 100)
    verdict = "passed with distinction" if score >= 90 else "passed" if score >= 60 else "did not pass"
    return {
        "assessment_id": f"asm-{i:05d}",
        "title": f"{course} quiz on {topic}",
        "learner": _name(rng),
        "score": score,
        "max_score": 100,
        "feedback": f"The learner {verdict}. Strong on {rng.choice(TOPICS)}, needs more practice with {topic}.",
        "questions": [{"q": f"Explain {rng.choice(TOPICS)}", "points": rng.randint(5, 20)} for _ in range(2)],
    }


def _devlab(i: int, rng: random.Random) -> dict[str, Any]:
    language = rng.choice(["Python", "Rust", "TypeScript", "Go", "SQL"])
    outcome = rng.choice(["all tests passed", "2 tests failed", "timed out", "compiled with warnings"])
    return {
        "_id": f"lab{i:07d}",
        "exercise": f"Implement {rng.choice(TOPICS)} in {language}",
        "language": language,
        "author": _name(rng),
        "result": outcome,
        "review": f"Submission for the {rng.choice(COURSES)} lab: {outcome}. Reviewer notes on {rng.choice(TOPICS)}.",
        "runtime_ms": rng.randint(3, 4000),
    }


def _analytics(i: int, rng: random.Random) -> dict[str, Any]:
    course, metric = rng.choice(COURSES), rng.choice(["completion rate", "weekly active learners", "drop-off"])
    value = round(rng.uniform(0.05, 0.98), 3)
    return {
        "id": 100_000 + i,
        "metric": metric,
        "course": course,
        "value": value,
        "window": rng.choice(["7d", "30d", "90d"]),
        "insight": f"{metric.capitalize()} of {course} is {value:.0%} this period, "
        f"driven by learners from {rng.choice(COUNTRIES)}.",
    }


SENTENCES = [
    "The module starts from first principles and builds every idea on a worked example.",
    "Learners who practise daily retain noticeably more after the first month.",
    "Each exercise ends with a short reflection on what went wrong and why.",
    "Reviewers look for clear names, small functions and tests that can fail.",
    "The final project asks for a design note before any code is written.",
    "Office hours cover questions that the forum could not settle.",
    "Grades weigh the project more than the quizzes, and late work loses a tenth per day.",
    "Most questions in the forum concern setting up the environment, not the material.",
    "A short video introduces each week and a longer reading follows it.",
    "Peer review pairs learners from different time zones on purpose.",
]


def _knowledge(i: int, rng: random.Random) -> dict[str, Any]:
    course, topic = rng.choice(COURSES), rng.choice(TOPICS)
    body = " ".join(rng.choice(SENTENCES) for _ in range(14))
    return {
        "id": f"kb-{i:05d}",
        "title": f"{course}: a guide to {topic}",
        "body": f"This article explains {topic} for the course {course}. {body}",
        "author": _name(rng),
    }


Generator = Callable[[int, random.Random], dict[str, Any]]  # record `index` of a service, from its own generator

GENERATORS: dict[str, Generator] = {
    "payment-service": _payment,
    "assessment-service": _assessment,
    "devlab-service": _devlab,
    "analytics-service": _analytics,
    "knowledge-service": _knowledge,  # long articles (~200 words); not in BATCH_SYNC_SERVICES by default
}


# The field a new revision of a record visibly changes.
_CHANGING_FIELD = {
    "payment-service": "description",
    "assessment-service": "feedback",
    "devlab-service": "review",
    "analytics-service": "insight",
    "knowledge-service": "body",
}


def demo_record(
    service: str, index: int, revision: int = 0, generators: Mapping[str, Generator] = GENERATORS
) -> dict[str, Any]:
    """Record `index` (0-based) of `service`, made by its generator in `generators` (the demo's by default); the
    same inputs always give the same record."""
    rng = random.Random(f"{service}:{index}:{revision}")
    record = generators[service](index, rng)
    if revision:
        changing = _CHANGING_FIELD.get(service, "revision")  # another service's records get a field of their own
        record[changing] = f"{record.get(changing, '')} (revision {revision})".lstrip()
    record["updated_at"] = demo_updated_at(index, revision).isoformat()
    return record


def demo_updated_at(index: int, revision: int = 0) -> datetime:
    """When record `index` at `revision` last changed (without generating it)."""
    return EPOCH + timedelta(minutes=index) + timedelta(days=revision)
