"""Git worktree workspaces, exercised with real git in temporary directories."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from app.workspaces import (
    MergeConflict,
    branch_name,
    commit_all,
    create_worktree,
    ensure_repository,
    git,
    merge_branches,
    remove_worktrees,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    (path / "README.md").write_text("hello\n")
    return ensure_repository(path)


def _branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").stdout.split())


def _write_and_commit(worktree: Path, name: str, text: str) -> None:
    (worktree / name).write_text(text)
    assert commit_all(worktree, f"write {name}") is not None


def test_ensure_repository_initialises_once_with_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "new"
    repo = ensure_repository(path)
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert ensure_repository(path) == repo
    assert git(repo, "rev-parse", "HEAD").stdout.strip() == head
    assert git(repo, "rev-list", "--count", "HEAD").stdout.strip() == "1"


def test_ensure_repository_commits_existing_files(repo: Path) -> None:
    assert git(repo, "ls-files").stdout.split() == ["README.md"]


def test_create_worktree_is_idempotent_and_uses_the_task_branch(repo: Path) -> None:
    first = create_worktree(repo, "ses-1", "build api")
    again = create_worktree(repo, "ses-1", "build api")
    assert first == again
    assert first.is_relative_to(repo / ".orchestrator" / "worktrees")
    assert (first / "README.md").read_text() == "hello\n"
    assert git(first, "branch", "--show-current").stdout.strip() == branch_name(
        "ses-1", "build api"
    )
    assert branch_name("ses-1", "build api") == "orch/ses-1/build-api"
    assert git(repo, "status", "--porcelain").stdout == ""  # worktrees stay out of git status


def test_create_worktree_under_a_root_outside_the_repo(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "trees"
    path = create_worktree(repo, "ses-2", "t1", root=root)
    assert path.is_relative_to(root) and (path / "README.md").exists()
    assert remove_worktrees(repo, "ses-2", root=root) == ["orch/ses-2/t1"]
    assert not path.exists()


def test_eight_threads_create_worktrees_at_once(repo: Path) -> None:
    barrier = threading.Barrier(8)
    paths: dict[int, Path] = {}
    errors: list[BaseException] = []

    def create(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            paths[index] = create_worktree(repo, "ses-par", f"task-{index}")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len({str(p) for p in paths.values()}) == 8
    assert all((p / "README.md").exists() for p in paths.values())
    assert {f"orch/ses-par/task-{i}" for i in range(8)} <= _branches(repo)


def _create_in_process(repo: str, index: int, queue: multiprocessing.Queue) -> None:
    try:
        queue.put(str(create_worktree(repo, "ses-proc", f"task-{index}")))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"error: {exc}")


def test_four_processes_create_worktrees_at_once(repo: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [
        context.Process(target=_create_in_process, args=(str(repo), i, queue)) for i in range(4)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert not [r for r in results if r.startswith("error")], results
    assert len(set(results)) == 4


def test_merge_branches_in_dependency_order(repo: Path) -> None:
    first = create_worktree(repo, "ses-m", "design")
    _write_and_commit(first, "design.md", "design\n")
    second = create_worktree(repo, "ses-m", "implement", base=branch_name("ses-m", "design"))
    (second / "design.md").write_text("design, revised\n")
    _write_and_commit(second, "code.py", "print('hi')\n")
    third = create_worktree(repo, "ses-m", "docs")
    _write_and_commit(third, "docs.md", "docs\n")
    branches = [branch_name("ses-m", k) for k in ("design", "implement", "docs")]

    head = merge_branches(repo, branches, "integration")

    files = git(repo, "ls-tree", "-r", "--name-only", head).stdout.split()
    assert {"README.md", "design.md", "code.py", "docs.md"} <= set(files)
    assert git(repo, "show", f"{head}:design.md").stdout == "design, revised\n"
    log = git(repo, "log", "--format=%s", "integration").stdout
    assert log.index("Merge orch/ses-m/docs") < log.index("Merge orch/ses-m/implement")
    assert git(repo, "branch", "--show-current").stdout.strip() == "main"  # repo untouched


def test_merge_into_the_checked_out_branch(repo: Path) -> None:
    tree = create_worktree(repo, "ses-c", "one")
    _write_and_commit(tree, "one.txt", "1\n")
    head = merge_branches(repo, [branch_name("ses-c", "one")], "main")
    assert git(repo, "rev-parse", "HEAD").stdout.strip() == head
    assert (repo / "one.txt").read_text() == "1\n"


def test_merge_conflict_lists_files_and_aborts(repo: Path) -> None:
    left = create_worktree(repo, "ses-x", "left")
    right = create_worktree(repo, "ses-x", "right")
    _write_and_commit(left, "README.md", "left\n")
    _write_and_commit(left, "shared.txt", "left\n")
    _write_and_commit(right, "README.md", "right\n")
    _write_and_commit(right, "shared.txt", "right\n")
    _write_and_commit(right, "clean.txt", "fine\n")
    branches = [branch_name("ses-x", "left"), branch_name("ses-x", "right")]

    with pytest.raises(MergeConflict) as caught:
        merge_branches(repo, branches, "main")

    assert sorted(caught.value.files) == ["README.md", "shared.txt"]
    assert caught.value.branch == branches[1]
    assert caught.value.merged == [branches[0]]
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=no").stdout == ""
    assert (repo / "README.md").read_text() == "left\n"


def test_remove_worktrees_deletes_trees_and_branches(repo: Path) -> None:
    paths = [create_worktree(repo, "ses-r", f"t{i}") for i in range(3)]
    other = create_worktree(repo, "ses-keep", "t0")
    removed = remove_worktrees(repo, "ses-r")
    assert sorted(removed) == [f"orch/ses-r/t{i}" for i in range(3)]
    assert not any(p.exists() for p in paths)
    assert other.exists() and "orch/ses-keep/t0" in _branches(repo)
    assert not (repo / ".orchestrator" / "worktrees" / "ses-r").exists()
    assert remove_worktrees(repo, "ses-r") == []
