"""Process-wide handles: the database engines and the thread-local session."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import scoped_session, sessionmaker

# A pooled connection is pinged at checkout only when it sat idle longer than this (HikariCP's
# aliveBypassWindowMs). `pool_pre_ping` pinged at every checkout: a round trip per request, a
# tenth of the CPU of a busy read (docs/benchmarks.md). A connection that broke within the window
# fails its first statement instead; SQLAlchemy then recycles every pooled connection.
PING_AFTER_IDLE_SECONDS = 0.5
_CHECKED_IN_AT = "checked_in_at"


def _ping_when_idle(engine: Engine) -> Engine:
    """Install the idle-window ping on `engine`'s pool."""

    def checked_in(_dbapi_connection, record) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    def checked_out(dbapi_connection, record, _proxy) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is not None and time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # As pool_pre_ping does: recycle every pooled connection, hand out a new one.
            raise InvalidatePoolError(f"ping failed: {error}") from error

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)
    return engine


class Database:
    """An engine and a scoped (thread-local) session, configured once per process; and `reader`,
    an engine in autocommit for reads done in one statement (no transaction to begin or reset:
    each of those calls costs a round trip or a handover of the GIL)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.reader: Engine | None = None
        self.session = scoped_session(sessionmaker(expire_on_commit=False))

    def init(self, url: str, pool_size: int = 10) -> None:
        """Create the engines for `url` (they connect when first used); safe to call again."""
        if self.engine is not None and str(self.engine.url) == url:
            return
        self.dispose()
        pool = {"pool_size": pool_size, "max_overflow": pool_size}
        self.engine = _ping_when_idle(create_engine(url, **pool))
        self.reader = _ping_when_idle(
            create_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, **pool)
        )
        self.session.configure(bind=self.engine)

    def dispose(self) -> None:
        """Forget pooled connections, e.g. after a fork or a database restart."""
        self.session.remove()
        for engine in (self.engine, self.reader):
            if engine is not None:
                engine.dispose()


db = Database()
