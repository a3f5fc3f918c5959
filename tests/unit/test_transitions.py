"""The status transition tables, checked edge by edge."""

import itertools

import pytest

from app.engine.transitions import BULK_CHANGES
from models import InvalidTransition, Session, SessionTask
from models.enums import SESSION_TRANSITIONS, TASK_TRANSITIONS, SessionStatus, TaskStatus


def test_every_status_has_a_row():
    assert set(SESSION_TRANSITIONS) == set(SessionStatus)
    assert set(TASK_TRANSITIONS) == set(TaskStatus)


@pytest.mark.parametrize("current, target", list(itertools.product(SessionStatus, SessionStatus)))
def test_session_transitions(current, target):
    session = Session(status=current)
    if target in SESSION_TRANSITIONS[current]:
        session.transition_to(target)
        assert session.status is target
    else:
        with pytest.raises(InvalidTransition) as error:
            session.transition_to(target)
        assert error.value.current == current.value
        assert session.status is current


@pytest.mark.parametrize("current, target", list(itertools.product(TaskStatus, TaskStatus)))
def test_task_transitions(current, target):
    task = SessionTask(status=current)
    if target in TASK_TRANSITIONS[current]:
        task.transition_to(target)
        assert task.status is target
    else:
        with pytest.raises(InvalidTransition):
            task.transition_to(target)
        assert task.status is current


def test_terminal_session_statuses_set_finished_at():
    session = Session(status=SessionStatus.RUNNING)
    session.transition_to(SessionStatus.COMPLETED)
    assert session.finished_at is not None


@pytest.mark.parametrize("change", BULK_CHANGES, ids=lambda change: change.name)
def test_every_bulk_change_moves_only_along_edges_of_the_task_table(change):
    for status in change.among - {change.target}:
        assert change.target in TASK_TRANSITIONS[status], f"{status.value} -> {change.target}"
    assert change.sources == change.among  # no intended source is dropped unseen
