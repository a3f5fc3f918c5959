"""Process-wide handles: the database engine and its thread-local session."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import scoped_session, sessionmaker


class Database:
    """An engine and a scoped (thread-local) session, configured once per process."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.session = scoped_session(sessionmaker(expire_on_commit=False))

    def init(self, url: str, pool_size: int = 10) -> None:
        """Create the engine for `url`; safe to call again with the same URL."""
        if self.engine is not None and str(self.engine.url) == url:
            return
        if self.engine is not None:
            self.engine.dispose()
        self.engine = create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )
        self.session.configure(bind=self.engine)

    def dispose(self) -> None:
        """Forget pooled connections, e.g. after a fork or a database restart."""
        self.session.remove()
        if self.engine is not None:
            self.engine.dispose()


db = Database()
