"""Migrations: upgrade to head on an empty database, match the models, and go back down."""

from tests.conftest import run_alembic


def test_upgrade_head_then_check_then_downgrade(make_database):
    url = make_database("orch_migrations")
    upgrade = run_alembic(url, "upgrade", "head")
    assert upgrade.returncode == 0, upgrade.stderr
    check = run_alembic(url, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    assert run_alembic(url, "downgrade", "base").returncode == 0
    assert run_alembic(url, "upgrade", "head").returncode == 0
