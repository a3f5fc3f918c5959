"""How a shell command is confined: a minimal environment, and an unprivileged user under root.

A command never inherits the worker's environment (database and broker URLs, SECRET_KEY,
FLOWER_BASIC_AUTH, tokens, OpenCode passwords): it gets the variables of `ENV_ALLOWED`, the
`env` mapping an admin set in its agent's config, and the task's `ORCH_*` variables. When the
worker runs as root, commands run as `COMMAND_USER` (default `orch-command`, a system user
created on first use), with no new privileges (setuid binaries such as sudo do not elevate).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# What a command sees of the worker's environment: locale, time zone, terminal, search path,
# temporary directory and who it runs as. Nothing that can hold a credential (proxies can:
# `http_proxy=http://user:pass@…`; an admin adds them to an agent's `env` when needed).
ENV_ALLOWED = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR"}
)
ENV_ALLOWED_PREFIXES = ("LC_",)
# The worker's user's own: another user gets its passwd entry's (and /tmp: the worker's TMPDIR
# may be private to it).
PER_USER = frozenset({"HOME", "USER", "LOGNAME", "SHELL", "TMPDIR"})
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
BASH = shutil.which("bash") or "/bin/bash"

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PREFIX = "ORCH_"  # the task's own variables, set by the driver
MAX_ENV_ENTRIES = 64
MAX_ENV_NAME = 128
MAX_ENV_VALUE = 8192
MAX_ENV_TOTAL = 65536

DEFAULT_COMMAND_USER = "orch-command"
COMMAND_HOME = Path("/var/lib") / DEFAULT_COMMAND_USER


class CommandUserError(RuntimeError):
    """The configured COMMAND_USER cannot be used."""


@dataclass(frozen=True)
class CommandUser:
    """The unprivileged account commands run as when the worker is root."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]


def env_problems(env: Any) -> dict[str, str] | str | None:
    """Why `env` is not a valid agent `env` mapping (per name, or as a whole); None if it is."""
    if not isinstance(env, Mapping):
        return "Must be an object of NAME: value strings."
    if len(env) > MAX_ENV_ENTRIES:
        return f"At most {MAX_ENV_ENTRIES} variables."
    problems: dict[str, str] = {}
    total = 0
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.match(name) or len(name) > MAX_ENV_NAME:
            problems[str(name)[:MAX_ENV_NAME]] = (
                f"A name is letters, digits and _, not starting with a digit, at most "
                f"{MAX_ENV_NAME} characters."
            )
        elif name.upper().startswith(RESERVED_PREFIX):
            problems[name] = f"Names starting with {RESERVED_PREFIX} are set by the orchestrator."
        elif not isinstance(value, str):
            problems[name] = "The value must be a string."
        elif "\x00" in value or len(value) > MAX_ENV_VALUE:
            problems[name] = f"At most {MAX_ENV_VALUE} characters, no NUL."
        else:
            total += len(name) + len(value)
    if problems:
        return problems
    if total > MAX_ENV_TOTAL:
        return f"At most {MAX_ENV_TOTAL} characters in all."
    return None


def agent_env(config: Mapping[str, Any] | None, agent_id: str = "") -> dict[str, str]:
    """The valid part of an agent's `config["env"]` (stored rows predate validation)."""
    env = (config or {}).get("env")
    if not env:
        return {}
    if env_problems(env) is None:
        return dict(env)
    logger.warning("agent env ignored agent_id=%s: it is not a mapping of valid names", agent_id)
    return {}


def command_environment(
    agent: Mapping[str, str], task: Mapping[str, str], user: CommandUser | None
) -> dict[str, str]:
    """The environment of a command: allowed worker variables < the agent's env < the task's."""
    env = {
        name: value
        for name, value in os.environ.items()
        if (name in ENV_ALLOWED or name.startswith(ENV_ALLOWED_PREFIXES))
        and not (user and name in PER_USER)
    }
    env.setdefault("PATH", DEFAULT_PATH)
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name, SHELL=BASH)
        # The worktree's git metadata stays root's: let the command's git read it.
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
    env.update(agent)
    env.update(task)
    return env


_user_lock = threading.Lock()


def command_user() -> CommandUser | None:
    """Who commands run as: None when the worker is not root (they run as the worker does)."""
    if os.geteuid() != 0:
        return None
    return _resolve_user(os.environ.get("COMMAND_USER") or DEFAULT_COMMAND_USER)


@lru_cache(maxsize=4)
def _resolve_user(name: str) -> CommandUser:
    with _user_lock:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if name != DEFAULT_COMMAND_USER:
                raise CommandUserError(f"COMMAND_USER={name} names no user on this host.") from None
            entry = _create_user(name)
    if entry.pw_uid == 0:
        raise CommandUserError(f"COMMAND_USER={name} is root; commands must not run as root.")
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return CommandUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


def _create_user(name: str) -> pwd.struct_passwd:
    """A system user with its own group and home, for commands only (never PostgreSQL's)."""
    command = ["useradd", "--system", "--user-group", "--create-home", "--home-dir",
               str(COMMAND_HOME), "--shell", "/usr/sbin/nologin", name]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError as error:
        raise CommandUserError(f"Cannot create COMMAND_USER {name}: {error}") from error
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise CommandUserError(
            f"Cannot create COMMAND_USER {name}: {result.stderr.strip() or result.returncode}"
        ) from None
    logger.info("command user created user=%s uid=%s home=%s", name, entry.pw_uid, entry.pw_dir)
    return entry


# util-linux's setpriv sets the parent-death signal (after changing the user) before exec'ing
# bash, which lets Python spawn with vfork; a preexec_fn would force a full fork of the worker.
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def launcher(user: CommandUser | None) -> list[str]:
    """The argv prefix that starts a command: dies with its worker, drops to `user`."""
    if not SETPRIV:
        return []
    prefix = [SETPRIV, "--pdeathsig", "KILL"]
    if user is not None:
        prefix += ["--reuid", str(user.uid), "--regid", str(user.gid), "--init-groups",
                   "--no-new-privs"]  # fmt: skip
    return prefix


def popen_user(user: CommandUser | None) -> dict[str, Any]:
    """Popen arguments that drop to `user` when there is no setpriv to do it."""
    if user is None or SETPRIV:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


def hide_worker_from_commands() -> None:
    """When commands run as the worker's own user (the worker is not root), make the worker
    non-dumpable: a command can then neither read its /proc/<pid>/environ (the secrets the
    minimal environment keeps from it) nor ptrace it. Core dumps of the worker are off."""
    if os.geteuid() == 0 or not sys.platform.startswith("linux"):
        return  # a root worker's commands run as COMMAND_USER, who cannot read them anyway
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_dumpable = 4
    if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        logger.warning("could not make the worker non-dumpable errno=%s", ctypes.get_errno())


def prepare_workdir(workdir: str, user: CommandUser | None, workspace_root: str | None) -> None:
    """Make sure `workdir` exists; under root, that `user` can write in a new one.

    A missing workdir inside WORKSPACE_ROOT (the orchestrator's own directory) is created and
    given to `user`; one elsewhere is created as `user`, so an API caller cannot have root
    create a directory that the command user could then write in (e.g. /etc/profile.d).
    Raises OSError when it cannot be made.
    """
    if user is None:
        os.makedirs(workdir, exist_ok=True)
        return
    if os.path.isdir(workdir):
        return
    inside = _relative_parts(workdir, workspace_root) if workspace_root else ()
    if inside:
        os.makedirs(workspace_root, exist_ok=True)
        first = os.path.join(os.path.realpath(workspace_root), inside[0])
        try:
            os.mkdir(first, 0o755)
            os.chown(first, user.uid, user.gid, follow_symlinks=False)
        except FileExistsError:
            pass
        if len(inside) == 1:
            return
    result = subprocess.run([*launcher(user), "mkdir", "-p", "--", workdir], capture_output=True,
                            text=True, timeout=30, **popen_user(user))  # fmt: skip
    if result.returncode != 0:
        raise OSError(f"as {user.name} (COMMAND_USER): {result.stderr.strip()}")


def writable_by(path: str, user: CommandUser) -> bool:
    """Whether `user` can create files in the directory `path` (and reach it).

    Mode bits answer when they allow it; when they do not, `test -w` as the user has the
    last word (an ACL may allow what the bits do not).
    """
    try:
        if _bits_allow(os.stat(path), user, 0o3) and all(
            _bits_allow(os.stat(parent), user, 0o1) for parent in Path(path).resolve().parents
        ):
            return True
    except OSError:
        return False
    probe = [*launcher(user), "test", "-w", path, "-a", "-x", path]
    return (
        subprocess.run(probe, capture_output=True, timeout=30, **popen_user(user)).returncode == 0
    )


def _bits_allow(st: os.stat_result, user: CommandUser, wanted: int) -> bool:
    """Whether the owner, group or other bits that apply to `user` include `wanted` (rwx=7)."""
    if st.st_uid == user.uid:
        shift = 6
    elif st.st_gid in user.groups:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & wanted == wanted


def _relative_parts(path: str, root: str) -> tuple[str, ...]:
    """The components of `path` below `root` (both resolved); () when it is not below it."""
    try:
        return Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).parts
    except ValueError:
        return ()


def hand_over_worktree(path: Path, user: CommandUser) -> None:
    """Let `user` write in a fresh worktree while git's metadata stays root's.

    The contents become the user's; the top directory stays root's with the user's group,
    group-writable and sticky, so the user can add files there but cannot replace the `.git`
    file that points root's git (which commits the task's changes) at its metadata.
    """
    top = os.stat(path)
    if top.st_gid == user.gid and top.st_mode & stat.S_ISVTX:
        return  # handed over already
    for parent, directories, files in os.walk(path):
        for name in directories + files:
            if parent == str(path) and name == ".git":
                continue
            os.chown(os.path.join(parent, name), user.uid, user.gid, follow_symlinks=False)
        if parent == str(path) and ".git" in directories:
            directories.remove(".git")
    os.chown(path, top.st_uid, user.gid)
    os.chmod(path, stat.S_IMODE(top.st_mode) | stat.S_IRWXG | stat.S_ISVTX)
