"""Repositories every host reaches: per-host bare mirrors, worktrees from a fetched base, pushed
task branches and a pushed integration merge, with real git and a bare remote on disk (two
WORKSPACE_ROOTs stand for two hosts that share nothing but the remote)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.workspaces import (
    MergeConflict,
    RemoteUnavailable,
    WorkspaceError,
    branch_name,
    branch_problem,
    commit_all,
    create_remote_worktree,
    ensure_mirror,
    git,
    merge_remote_branches,
    mirror_path,
    push_branch,
    remove_remote_worktree,
    repository_url_problem,
)


@pytest.fixture
def remote(tmp_path: Path) -> str:
    """A bare repository with one commit on `trunk` (its HEAD), as a file:// URL."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "trunk", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    (seed / "README.md").write_text("hello\n")
    commit_all(seed, "Initial commit")
    git(seed, "push", "-q", "origin", "HEAD:refs/heads/trunk")
    return f"file://{bare}"


def _remote_branches(url: str) -> dict[str, str]:
    listed = git(Path("/"), "ls-remote", "--heads", url).stdout.split("\n")
    return {line.split("\trefs/heads/")[1]: line.split("\t")[0] for line in listed if line}


def _task(url: str, root: Path, key: str, files: dict[str, str], after: str | None = None):
    """Run a task as a worker host does: worktree, change, commit, push; return the commit."""
    worktree = create_remote_worktree(url, root, "s1", key, after=after)
    for name, text in files.items():
        (worktree / name).write_text(text)
    commit_all(worktree, f"{key}: work")
    head = push_branch(worktree, branch_name("s1", key))
    remove_remote_worktree(worktree)
    assert not worktree.exists()
    return head


@pytest.mark.parametrize(
    "url",
    ["file:///srv/git/app.git", "ssh://git@example.com/team/app.git", "git@example.com:team/app",
     "https://example.com/team/app.git", "git://10.0.0.1/app.git", "ssh://example.com:2222/app"],
)  # fmt: skip
def test_git_urls_of_the_four_schemes_and_scp_syntax_are_accepted(url):
    assert repository_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "says"),
    [("ftp://example.com/app.git", "scheme"), ("/srv/git/app.git", "scheme"),
     ("https://user:secret@example.com/app.git", "Credentials"), ("file://relative/x", "absolute"),
     ("https:///app.git", "host"), ("git://host/app.git\n", "spaces"), ("", "spaces"),
     ("ext::sh -c touch% /tmp/pwned", "spaces"), ("--upload-pack=x:y", "'-'")],
)  # fmt: skip
def test_bad_git_urls_are_refused_with_the_reason(url, says):
    problem = repository_url_problem(url)
    assert problem is not None and says in problem


@pytest.mark.parametrize("branch", ["main", "release/1.2", "feature_x-y"])
def test_valid_branch_names(branch):
    assert branch_problem(branch) is None


@pytest.mark.parametrize(
    "branch", ["", "-x", "a..b", "a b", "x.lock", "a/.b", "end/", "a~1", "a:b", "@", "a@{1}"]
)
def test_invalid_branch_names(branch):
    assert branch_problem(branch) is not None


def test_a_task_starts_from_the_remotes_default_branch_and_pushes_its_branch(remote, tmp_path):
    host = tmp_path / "host-a"
    head = _task(remote, host, "api", {"api.txt": "api\n"})
    branches = _remote_branches(remote)
    assert branches[branch_name("s1", "api")] == head
    mirror = mirror_path(host, remote)
    assert mirror.is_relative_to(host / "mirrors") and (mirror / "HEAD").exists()
    assert git(mirror, "rev-parse", f"{head}^").stdout.strip() == branches["trunk"]


def test_a_rerun_on_another_host_starts_fresh_from_the_base_and_replaces_the_branch(
    remote, tmp_path
):
    first = _task(remote, tmp_path / "host-a", "api", {"api.txt": "first try\n"})
    worktree = create_remote_worktree(remote, tmp_path / "host-b", "s1", "api")
    assert not (worktree / "api.txt").exists()  # the base, not the lost attempt's work
    (worktree / "api.txt").write_text("second try\n")
    commit_all(worktree, "api: again")
    second = push_branch(worktree, branch_name("s1", "api"))
    assert second != first and _remote_branches(remote)[branch_name("s1", "api")] == second


def test_an_earlier_attempts_worktree_on_the_same_host_is_discarded(remote, tmp_path):
    host = tmp_path / "host-a"
    worktree = create_remote_worktree(remote, host, "s1", "api")
    (worktree / "half.txt").write_text("left by a killed attempt\n")
    again = create_remote_worktree(remote, host, "s1", "api")
    assert again == worktree and not (again / "half.txt").exists()


def test_integration_merges_branches_pushed_from_several_hosts(remote, tmp_path):
    heads = [
        _task(remote, tmp_path / f"host-{index}", key, {f"{key}.txt": f"{key}\n"})
        for index, key in enumerate(["a", "b", "c"])
    ]
    target = branch_name("s1", "integration")
    merged = merge_remote_branches(
        remote, tmp_path / "host-z", [branch_name("s1", key) for key in "abc"], target
    )
    assert _remote_branches(remote)[target] == merged
    mirror = mirror_path(tmp_path / "host-z", remote)
    for head in heads:
        git(mirror, "merge-base", "--is-ancestor", head, merged)
    # A task after the integration step starts from the pushed integration branch.
    worktree = create_remote_worktree(remote, tmp_path / "host-0", "s1", "d", after=target)
    assert sorted(p.name for p in worktree.glob("*.txt")) == ["a.txt", "b.txt", "c.txt"]
    # Merging again (a re-run of the step) changes nothing and still pushes.
    assert merge_remote_branches(
        remote, tmp_path / "host-y", [branch_name("s1", key) for key in "abc"], target
    ) == merged  # fmt: skip


def test_a_conflict_is_reported_and_nothing_is_pushed(remote, tmp_path):
    _task(remote, tmp_path / "host-a", "a", {"same.txt": "from a\n"})
    _task(remote, tmp_path / "host-b", "b", {"same.txt": "from b\n"})
    target = branch_name("s1", "integration")
    with pytest.raises(MergeConflict) as conflict:
        merge_remote_branches(
            remote, tmp_path / "host-c", [branch_name("s1", "a"), branch_name("s1", "b")], target
        )
    assert conflict.value.files == ["same.txt"]
    assert target not in _remote_branches(remote)
    assert not list((tmp_path / "host-c" / "worktrees").glob("_merge-*"))


def test_a_missing_task_branch_or_base_branch_is_a_workspace_error(remote, tmp_path):
    with pytest.raises(WorkspaceError, match="missing on the remote"):
        merge_remote_branches(remote, tmp_path / "h", ["orch/s1/never"], "orch/s1/integration")
    with pytest.raises(WorkspaceError, match="'nope' does not exist"):
        create_remote_worktree(remote, tmp_path / "h", "s1", "x", base_branch="nope")


def test_an_unreachable_remote_is_retryable(tmp_path):
    with pytest.raises(RemoteUnavailable):
        create_remote_worktree(f"file://{tmp_path}/absent.git", tmp_path / "h", "s1", "x")


def test_concurrent_tasks_on_one_host_share_one_mirror(remote, tmp_path):
    host = tmp_path / "host-a"
    errors: list[BaseException] = []

    def run(key: str) -> None:
        try:
            _task(remote, host, key, {f"{key}.txt": key})
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {branch_name("s1", f"t{i}") for i in range(6)} <= set(_remote_branches(remote))
    assert [p.name for p in (host / "mirrors").iterdir() if p.suffix == ".git"] == [
        ensure_mirror(remote, host).name
    ]


def test_a_task_asked_after_the_remote_moved_starts_from_the_new_base(remote, tmp_path):
    host = tmp_path / "host-a"
    first = create_remote_worktree(remote, host, "s1", "one")
    seed = tmp_path / "seed"
    (seed / "later.txt").write_text("pushed after the first fetch\n")
    commit_all(seed, "later")
    git(seed, "push", "-q", "origin", "HEAD:refs/heads/trunk")
    second = create_remote_worktree(remote, host, "s1", "two")
    assert not (first / "later.txt").exists() and (second / "later.txt").exists()
