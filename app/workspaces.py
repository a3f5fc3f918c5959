"""Git worktrees as task workspaces: one branch and one working tree per task, merged at the end."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import app.sandbox as sandbox

logger = logging.getLogger(__name__)

BRANCH_PREFIX = "orch"
DEFAULT_ROOT = Path(".orchestrator") / "worktrees"
LOCK_NAME = "orchestrator-worktrees.lock"
FALLBACK_IDENTITY = ("Orchestrator", "orchestrator@localhost")
GIT_TIMEOUT = 120

_locks_guard = threading.Lock()
_process_locks: dict[str, threading.Lock] = {}


class WorkspaceError(RuntimeError):
    """A git operation on a workspace failed."""


class MergeConflict(WorkspaceError):
    """Merging `branch` into `target` conflicted on `files`; the merge was aborted."""

    def __init__(self, branch: str, target: str, files: list[str], merged: list[str]) -> None:
        super().__init__(f"merging {branch} into {target} conflicts in: {', '.join(files) or '?'}")
        self.branch = branch
        self.target = target
        self.files = files
        self.merged = merged


def git(
    cwd: str | os.PathLike[str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one git command in `cwd`; raise WorkspaceError with its stderr when it fails."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT
    )
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise WorkspaceError(f"git {' '.join(args)} failed in {cwd}: {detail}")
    return result


def _slug(value: str) -> str:
    """A string safe as one component of both a path and a git ref name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip(".-")
    slug = re.sub(r"\.{2,}", ".", slug)
    while slug.endswith(".lock"):  # git refuses a ref component ending in .lock
        slug = slug.removesuffix(".lock")
    return slug or "x"


def branch_name(session_id: str, task_key: str) -> str:
    """The task branch: orch/<session>/<task>."""
    return f"{BRANCH_PREFIX}/{_slug(session_id)}/{_slug(task_key)}"


INTEGRATION_KEY = "integration"  # branch_name(session, INTEGRATION_KEY) is the merge target


def branch_clashes(session_id: str, task_keys: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(branch, keys) for each branch that several task keys map to, or that a key maps to
    while it is the session's integration branch: those tasks would share one branch.

    Branches are compared case-insensitively: on a case-insensitive file system (macOS's and
    Windows' defaults) `orch/s/A` and `orch/s/a` are one ref, and one worktree directory.
    """
    integration = branch_name(session_id, INTEGRATION_KEY).casefold()
    groups: dict[str, tuple[str, list[str]]] = {}
    for key in task_keys:
        branch = branch_name(session_id, key)
        groups.setdefault(branch.casefold(), (branch, []))[1].append(key)
    return [(branch, keys) for folded, (branch, keys) in groups.items()
            if len(keys) > 1 or folded == integration]  # fmt: skip


def _identity_args(cwd: Path) -> list[str]:
    """`-c user.*` fallbacks, only when git has no identity configured for `cwd`."""
    args: list[str] = []
    for key, fallback in zip(("user.name", "user.email"), FALLBACK_IDENTITY, strict=True):
        if not git(cwd, "config", "--get", key, check=False).stdout.strip():
            args += ["-c", f"{key}={fallback}"]
    return args


@contextlib.contextmanager
def repository_lock(repo: str | os.PathLike[str]) -> Iterator[None]:
    """Serialize worktree changes on a repository across threads (a lock) and processes (flock)."""
    common = Path(
        git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip()
    )
    key = str(common.resolve())
    with _locks_guard:
        local = _process_locks.setdefault(key, threading.Lock())
    with local, open(common / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_repository(path: str | os.PathLike[str]) -> Path:
    """Make `path` the top of a git repository with at least one commit; return it."""
    repo = Path(path).resolve()
    repo.mkdir(parents=True, exist_ok=True)
    top = git(repo, "rev-parse", "--show-toplevel", check=False).stdout.strip()
    if not top or Path(top).resolve() != repo:
        git(repo, "init", "-q", "-b", "main")
        logger.info("workspace_repo_initialised repo=%s", repo)
    with repository_lock(repo):
        if git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
            _exclude(repo, f"/{DEFAULT_ROOT.parts[0]}/")
            git(repo, "add", "-A")
            identity = _identity_args(repo)
            git(repo, *identity, "commit", "-q", "--allow-empty", "-m", "Initial commit")
    return repo


def _exclude(repo: Path, pattern: str) -> None:
    """Add `pattern` to the repository's info/exclude (never to a tracked .gitignore)."""
    info = (
        Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip())
        / "info"
    )
    info.mkdir(exist_ok=True)
    exclude = info / "exclude"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if pattern not in lines:
        with exclude.open("a") as handle:
            handle.write(("\n" if lines and lines[-1] else "") + pattern + "\n")


def _worktrees(repo: Path) -> list[dict[str, str]]:
    """`git worktree list --porcelain` as a list of {worktree, HEAD, branch, ...} dicts."""
    entries: list[dict[str, str]] = []
    for block in git(repo, "worktree", "list", "--porcelain").stdout.strip().split("\n\n"):
        entry: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            entry[key] = value
        if entry:
            entries.append(entry)
    return entries


def worktree_path(repo: Path, session_id: str, task_key: str, root: Path | None = None) -> Path:
    """Where a task's worktree lives: under <repo>/.orchestrator/worktrees, or under `root`."""
    if root is None:
        return repo / DEFAULT_ROOT / _slug(session_id) / _slug(task_key)
    repo_id = f"{_slug(repo.name)}-{hashlib.sha1(str(repo).encode()).hexdigest()[:8]}"
    return Path(root).resolve() / repo_id / _slug(session_id) / _slug(task_key)


# The root commit tasks of a repository without commits start from: an empty tree with a fixed
# author and date, so every task (on every host) makes the same commit and the branches share
# an ancestor that the integration merge can use. The repository's own HEAD is left unborn.
_EMPTY_ROOT_ENV = {
    "GIT_AUTHOR_NAME": FALLBACK_IDENTITY[0], "GIT_AUTHOR_EMAIL": FALLBACK_IDENTITY[1],
    "GIT_COMMITTER_NAME": FALLBACK_IDENTITY[0], "GIT_COMMITTER_EMAIL": FALLBACK_IDENTITY[1],
    "GIT_AUTHOR_DATE": "1970-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "1970-01-01T00:00:00Z",
}  # fmt: skip


def start_point(repo: str | os.PathLike[str], base: str = "HEAD") -> str:
    """Where a task branch starts: `base`, or, in a repository without any commit yet, a
    shared empty root commit (made once, deterministically)."""
    if git(repo, "rev-parse", "--verify", "-q", f"{base}^{{commit}}", check=False).returncode == 0:
        return base
    if base != "HEAD":
        raise WorkspaceError(f"the base {base!r} does not exist in {repo}")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **_EMPTY_ROOT_ENV}
    output = ""
    for command in (["mktree"], ["commit-tree", "{tree}", "-m", "Empty root for tasks"]):
        command = [part.format(tree=output) for part in command]
        result = subprocess.run(
            ["git", *command], cwd=repo, env=env, input="", capture_output=True, text=True,
            timeout=GIT_TIMEOUT,
        )  # fmt: skip
        if result.returncode != 0:
            raise WorkspaceError(f"git {command[0]} failed in {repo}: {result.stderr.strip()}")
        output = result.stdout.strip()
    return output


def create_worktree(
    repo: str | os.PathLike[str],
    session_id: str,
    task_key: str,
    *,
    base: str = "HEAD",
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Check out branch orch/<session>/<task> in its own worktree; reuse the existing one."""
    repo_path = Path(repo).resolve()
    branch = branch_name(session_id, task_key)
    path = worktree_path(repo_path, session_id, task_key, Path(root) if root else None)
    with repository_lock(repo_path):
        git(repo_path, "worktree", "prune")
        for entry in _worktrees(repo_path):
            if entry.get("branch") == f"refs/heads/{branch}":
                _writable_for_commands(Path(entry["worktree"]))
                return Path(entry["worktree"])
            if Path(entry["worktree"]) == path:
                raise WorkspaceError(f"{path} is already a worktree of {entry.get('branch')}")
        if path.exists() and any(path.iterdir()):
            raise WorkspaceError(f"{path} exists and is not a worktree of {repo_path}")
        if root is None:
            _exclude(repo_path, f"/{DEFAULT_ROOT.parts[0]}/")
        path.parent.mkdir(parents=True, exist_ok=True)
        exists = git(repo_path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
        if exists.returncode == 0:
            git(repo_path, "worktree", "add", "-q", str(path), branch)
        else:
            start = start_point(repo_path, base)
            git(repo_path, "worktree", "add", "-q", "-b", branch, str(path), start)
        _writable_for_commands(path)
    logger.info(
        "workspace_created session_id=%s task=%s branch=%s path=%s",
        session_id,
        task_key,
        branch,
        path,
    )
    return path


def _writable_for_commands(worktree: Path) -> None:
    """Under a root worker, let COMMAND_USER (who runs the task's commands) write in it."""
    try:
        user = sandbox.command_user()
    except sandbox.CommandUserError as error:
        raise WorkspaceError(str(error)) from error
    if user is not None:
        sandbox.hand_over_worktree(worktree, user)


def commit_all(worktree: str | os.PathLike[str], message: str) -> str | None:
    """Stage and commit everything in `worktree`; return the commit, or None if nothing changed."""
    path = Path(worktree)
    git(path, "add", "-A")
    if git(path, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return None
    git(path, *_identity_args(path), "commit", "-q", "--no-verify", "-m", message)
    return git(path, "rev-parse", "HEAD").stdout.strip()


def merge_branches(
    repo: str | os.PathLike[str],
    branches: list[str],
    target_branch: str,
    *,
    root: str | os.PathLike[str] | None = None,
) -> str:
    """Merge `branches` in order into `target_branch`; return its new head.

    On a conflict the merge in progress is aborted and MergeConflict raised; branches merged
    before it stay merged (listed in `MergeConflict.merged`).
    """
    repo_path = Path(repo).resolve()
    with repository_lock(repo_path):
        checked_out = {e.get("branch"): Path(e["worktree"]) for e in _worktrees(repo_path)}
        place = checked_out.get(f"refs/heads/{target_branch}")
        temporary = place is None
        if temporary:
            parent = Path(root).resolve() if root else repo_path / DEFAULT_ROOT
            place = parent / f"_merge-{_slug(target_branch)}-{os.getpid()}"
            exists = git(
                repo_path, "rev-parse", "--verify", "-q", f"refs/heads/{target_branch}", check=False
            )
            new = [] if exists.returncode == 0 else ["-b", target_branch]
            target_ref = [target_branch if exists.returncode == 0 else start_point(repo_path)]
            git(repo_path, "worktree", "add", "-q", *new, str(place), *target_ref)
        elif git(place, "status", "--porcelain", "--untracked-files=no").stdout.strip():
            raise WorkspaceError(
                f"{target_branch} is checked out at {place} with uncommitted changes"
            )
        try:
            return _merge_in(place, branches, target_branch)
        finally:
            if temporary:
                git(repo_path, "worktree", "remove", "--force", str(place), check=False)


def _merge_in(place: Path, branches: list[str], target_branch: str) -> str:
    identity = _identity_args(place)
    merged: list[str] = []
    for branch in branches:
        message = f"Merge {branch} into {target_branch}"
        result = git(
            place, *identity, "merge", "--no-ff", "--no-edit", "-m", message, branch, check=False
        )
        if result.returncode != 0:
            files = git(place, "diff", "--name-only", "--diff-filter=U", check=False).stdout.split()
            git(place, "merge", "--abort", check=False)
            if not files:
                raise WorkspaceError(
                    f"merging {branch} failed: {(result.stderr or result.stdout).strip()}"
                )
            logger.warning(
                "workspace_merge_conflict branch=%s target=%s files=%s",
                branch,
                target_branch,
                files,
            )
            raise MergeConflict(branch, target_branch, files, merged)
        merged.append(branch)
    return git(place, "rev-parse", "HEAD").stdout.strip()


def branch_exists(repo: str | os.PathLike[str], branch: str) -> bool:
    """Whether `branch` still exists in the repository at `repo`."""
    found = git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
    return found.returncode == 0


def remove_worktrees(
    repo: str | os.PathLike[str], session_id: str, *, root: str | os.PathLike[str] | None = None
) -> list[str]:
    """Remove every worktree and branch of a session; return the branches deleted."""
    repo_path = Path(repo).resolve()
    prefix = f"refs/heads/{BRANCH_PREFIX}/{_slug(session_id)}/"
    with repository_lock(repo_path):
        for entry in _worktrees(repo_path):
            if entry.get("branch", "").startswith(prefix):
                git(repo_path, "worktree", "remove", "--force", entry["worktree"], check=False)
                shutil.rmtree(entry["worktree"], ignore_errors=True)
        git(repo_path, "worktree", "prune")
        refs = git(repo_path, "for-each-ref", "--format=%(refname:short)", prefix).stdout.split()
        if refs:
            git(repo_path, "branch", "-D", *refs)
        session_dir = worktree_path(repo_path, session_id, "x", Path(root) if root else None).parent
        if session_dir.is_dir() and not any(session_dir.iterdir()):
            session_dir.rmdir()
    logger.info("workspace_removed session_id=%s branches=%d", session_id, len(refs))
    return refs


# -- repositories every host reaches: a bare mirror per repository and host ----------------
#
# A session that names a `repository` (a git URL) instead of a local workdir works without a
# shared file system: each worker host keeps a bare mirror of the repository under its
# WORKSPACE_ROOT, a task checks out its own worktree from the mirror at its base (fetched
# first) and pushes its branch, and the integration step fetches the task branches, merges
# them in a scratch worktree and pushes the integration branch. The remote is the only
# shared state; a pushed branch is a task's result.

MIRRORS_DIR = "mirrors"
REMOTE_WORKTREES_DIR = "worktrees"
REMOTE = "origin"
DEFAULT_BRANCH = "main"
URL_SCHEMES = ("file", "ssh", "https", "git")
# scp-like ssh syntax: [user@]host:path (no "://"; a host of one letter would be a drive).
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]{2,}:(?!//)[^\s]+$")


class RemoteUnavailable(RuntimeError):
    """The repository's remote could not be reached or refused a fetch or a push; another
    attempt (perhaps on another host) may succeed."""


def repository_url_problem(url: str) -> str | None:
    """Why `url` cannot name a session's repository, or None when it can."""
    if not url or url != url.strip() or any(ord(char) < 33 for char in url):
        return "Give a git URL without spaces or control characters."
    if url.startswith("-"):
        return "A git URL cannot start with '-'."
    if "://" not in url:
        if _SCP_LIKE.match(url):
            return None
        schemes = ", ".join(URL_SCHEMES)
        return f"Give a git URL with one of the schemes {schemes} (or user@host:path)."
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in URL_SCHEMES:
        return f"The scheme {scheme!r} is not one of {', '.join(URL_SCHEMES)}."
    authority = rest.split("/", 1)[0]
    if ":" in authority.rpartition("@")[0]:
        return ("Credentials do not belong in the repository URL (it is stored and logged): "
                "give the workers a git credential helper or an ssh key.")  # fmt: skip
    if scheme.lower() == "file" and not rest.startswith("/"):
        return "A file:// URL needs an absolute path (file:///path/to/repo.git)."
    if scheme.lower() != "file" and not authority.rpartition("@")[2]:
        return "The URL names no host."
    return None


def branch_problem(branch: str) -> str | None:
    """Why `branch` is not a usable branch name (git check-ref-format's rules), or None."""
    bad = (
        not branch or branch.startswith(("-", "/")) or branch.endswith(("/", ".", ".lock"))
        or ".." in branch or "//" in branch or "@{" in branch or branch == "@"
        or any(ord(char) < 33 or char in "~^:?*[\\\x7f" for char in branch)
        or any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/"))
    )  # fmt: skip
    return "Not a valid git branch name." if bad else None


def _remote_git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A git command that talks to the remote: its failure is RemoteUnavailable."""
    try:
        return git(cwd, *args)
    except (WorkspaceError, subprocess.TimeoutExpired) as error:
        raise RemoteUnavailable(str(error)) from error


def mirror_path(root: str | os.PathLike[str], url: str) -> Path:
    """Where this host keeps its bare mirror of the repository at `url`."""
    name = _slug(url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git"))
    digest = hashlib.sha1(url.encode()).hexdigest()[:10]
    return Path(root).resolve() / MIRRORS_DIR / f"{name}-{digest}.git"


@contextlib.contextmanager
def _path_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across threads and processes (for what may not exist yet)."""
    with _locks_guard:
        local = _process_locks.setdefault(str(path), threading.Lock())
    path.parent.mkdir(parents=True, exist_ok=True)
    with local, open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_mirror(url: str, root: str | os.PathLike[str]) -> Path:
    """This host's bare mirror of `url` (made on first use); fetched into by `fetch_heads`."""
    mirror = mirror_path(root, url)
    with _path_lock(mirror.with_name(mirror.name + ".lock")):
        if not (mirror / "HEAD").exists():
            mirror.mkdir(parents=True, exist_ok=True)
            git(mirror, "init", "-q", "--bare")
            # No fetch refspec: fetches name their refs, and pushes leave the mirror alone.
            git(mirror, "config", f"remote.{REMOTE}.url", url)
            git(mirror, "config", "gc.auto", "0")  # no gc racing concurrent worktree changes
            _last_fetch.pop(str(mirror), None)  # a fetch into a mirror since deleted is gone
            logger.info("workspace_mirror_created mirror=%s", mirror)
    return mirror


# The last fetch into each mirror: (when it started, branches asked, default branch, found).
# A task that asked for the same branches before that fetch started reuses it (single flight):
# the fetch saw the remote at least as new as the task's request, so N tasks starting together
# on one host cost one fetch, not N.
_last_fetch: dict[str, tuple[float, frozenset[str], str, frozenset[str]]] = {}


def fetch_heads(
    mirror: Path, branches: Iterable[str], *, since: float | None = None
) -> tuple[str, set[str]]:
    """Fetch the remote's default branch (its HEAD, else main) and those of `branches` that
    exist into refs/remotes/origin/*; return the default branch and the set of branches
    fetched (the default among them when the remote has one). Call it under
    `repository_lock(mirror)`; with `since` (a time.monotonic() taken before the lock was
    asked for), a fetch of the same branches started after it is reused."""
    wanted = frozenset(branches)
    last = _last_fetch.get(str(mirror))
    if since is not None and last is not None and last[0] >= since and wanted <= last[1]:
        return last[2], set(last[3])
    started = time.monotonic()
    listed = _remote_git(
        mirror, "ls-remote", "--symref", REMOTE, "HEAD", *(f"refs/heads/{b}" for b in wanted)
    ).stdout
    default, heads, head = DEFAULT_BRANCH, {}, None
    for line in listed.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            default = line[5:].split("\t")[0].removeprefix("refs/heads/")
        elif line.endswith("\tHEAD"):
            head = line.split("\t")[0]  # HEAD names a commit: its branch exists
        elif "\trefs/heads/" in line:
            sha, _, name = line.partition("\trefs/heads/")
            heads[name] = sha
    if head is not None:
        heads.setdefault(default, head)
    found = {branch for branch in heads if branch in wanted or branch == default}
    # Fetch only what moved since the mirror last saw it (a task starting after its siblings
    # finds the base already there): ls-remote is one round trip, a fetch several.
    local = git(mirror, "for-each-ref", "--format=%(objectname) %(refname)",
                *(f"refs/remotes/{REMOTE}/{b}" for b in found)).stdout.split()  # fmt: skip
    have = dict(zip(local[1::2], local[0::2], strict=True))
    moved = sorted(b for b in found if have.get(f"refs/remotes/{REMOTE}/{b}") != heads[b])
    if moved:
        refspecs = [f"+refs/heads/{b}:refs/remotes/{REMOTE}/{b}" for b in moved]
        _remote_git(mirror, "fetch", "-q", "--no-tags", REMOTE, *refspecs)
    _last_fetch[str(mirror)] = (started, wanted, default, frozenset(found))
    return default, found


def create_remote_worktree(
    url: str,
    root: str | os.PathLike[str],
    session_id: str,
    task_key: str,
    *,
    base_branch: str | None = None,
    after: str | None = None,
) -> Path:
    """A fresh worktree of the task's branch orch/<session>/<task> on this host, started from
    the remote's `after` branch (the integration branch) when it exists, else from the base
    branch (None: the remote's default). A worktree of an earlier attempt is discarded: an
    attempt starts from its base."""
    mirror = ensure_mirror(url, root)
    branch = branch_name(session_id, task_key)
    path = worktree_path(mirror, session_id, task_key, Path(root) / REMOTE_WORKTREES_DIR)
    asked = time.monotonic()
    with repository_lock(mirror):
        default, fetched = fetch_heads(mirror, [b for b in (base_branch, after) if b], since=asked)
        base = base_branch or default
        start = after if after in fetched else base
        if start not in fetched:
            raise WorkspaceError(f"the base branch {start!r} does not exist in the repository")
        _discard_worktree(mirror, branch, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        git(mirror, "worktree", "add", "-q", "-B", branch, str(path), f"{REMOTE}/{start}")
    _writable_for_commands(path)
    logger.info("workspace_created session_id=%s task=%s branch=%s start=%s path=%s",
                session_id, task_key, branch, start, path)  # fmt: skip
    return path


def _discard_worktree(mirror: Path, branch: str, path: Path) -> None:
    """Remove an earlier attempt's worktree of `branch` (or at `path`) on this host."""
    ref = f"refs/heads/{branch}"
    stale = [entry["worktree"] for entry in _worktrees(mirror)
             if entry.get("branch") == ref or Path(entry["worktree"]) == path]  # fmt: skip
    for worktree in stale:
        git(mirror, "worktree", "remove", "--force", worktree, check=False)
    if stale or path.exists():
        shutil.rmtree(path, ignore_errors=True)
        git(mirror, "worktree", "prune")


def push_branch(worktree: str | os.PathLike[str], branch: str) -> str:
    """Force-push the worktree's HEAD as `branch` (a task's result; a re-run replaces it);
    return the commit pushed."""
    path = Path(worktree)
    head = git(path, "rev-parse", "HEAD").stdout.strip()
    _remote_git(path, "push", "-q", "--force", REMOTE, f"HEAD:refs/heads/{branch}")
    logger.info("workspace_pushed branch=%s commit=%s", branch, head[:12])
    return head


def remove_remote_worktree(worktree: str | os.PathLike[str]) -> None:
    """Remove a task's worktree from this host once its branch is pushed."""
    path = Path(worktree)
    common = git(path, "rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
    mirror = Path(common.stdout.strip())
    if common.returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        return
    with repository_lock(mirror):
        git(mirror, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
        git(mirror, "worktree", "prune", check=False)


def merge_remote_branches(
    url: str,
    root: str | os.PathLike[str],
    branches: list[str],
    target_branch: str,
    *,
    base_branch: str | None = None,
) -> str:
    """Fetch `branches`, merge them in order into the remote's `target_branch` (made from the
    base branch the first time) and push it; return its new head. MergeConflict as for
    `merge_branches`; a branch missing on the remote is a WorkspaceError."""
    mirror = ensure_mirror(url, root)
    place = Path(root).resolve() / REMOTE_WORKTREES_DIR / (
        f"_merge-{_slug(target_branch)}-{os.getpid()}-{threading.get_ident()}"
    )  # fmt: skip
    with repository_lock(mirror):
        wanted = [*([base_branch] if base_branch else []), target_branch, *branches]
        default, fetched = fetch_heads(mirror, wanted)
        base = base_branch or default
        missing = [branch for branch in branches if branch not in fetched]
        if missing:
            raise WorkspaceError(f"branches missing on the remote: {', '.join(missing)}")
        start = target_branch if target_branch in fetched else base
        if start not in fetched:
            raise WorkspaceError(f"the base branch {start!r} does not exist in the repository")
        shutil.rmtree(place, ignore_errors=True)
        git(mirror, "worktree", "add", "-q", "--detach", str(place), f"{REMOTE}/{start}")
    try:
        _merge_in(place, [f"{REMOTE}/{branch}" for branch in branches], target_branch)
        head = git(place, "rev-parse", "HEAD").stdout.strip()
        _remote_git(place, "push", "-q", REMOTE, f"HEAD:refs/heads/{target_branch}")
    finally:
        remove_remote_worktree(place)
    logger.info("workspace_integrated target=%s branches=%d commit=%s",
                target_branch, len(branches), head[:12])  # fmt: skip
    return head
