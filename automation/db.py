"""Engines for the two control-plane stores, and schema migration.

SQLite (embedded default): one file in the data directory, WAL, busy timeout, and
every write transaction opened with BEGIN IMMEDIATE so concurrent writers queue on
the lock instead of failing half-way. PostgreSQL (scale): several server replicas
share one database; migrations take an advisory lock so replicas starting at once
don't race.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_ID = 0x0075_7470  # arbitrary, stable


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'control-plane.db').resolve()}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # type: ignore[no-untyped-def]
            read_only = conn.get_execution_options().get("outpost_read_only", False)
            conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise ValueError(f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:/// or postgresql+psycopg://")


def listen_engine(url: str) -> Engine:
    """A pool-less engine for PostgreSQL LISTEN connections."""
    return create_engine(url, poolclass=NullPool)


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision."""
    cfg = _alembic_config()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
                conn.commit()
