"""A replica's durable, ordered, bounded buffer of telemetry records on their way to the collector.

One SQLite file in the replica's data directory (WAL, synchronous=NORMAL: a record
survives the process dying, which is the failure that matters here). Records get an
increasing `seq` (AUTOINCREMENT: never reused) and leave only when the collector has
acknowledged them. The file also holds this buffer's `replica` id: the collector
skips any record at or below the newest seq it applied for that id, so deleting the
file (a new id) can never make it drop fresh records as duplicates.

When the buffer is over its size limit the oldest records are dropped, with a log
line: the newest telemetry is what an operator looks at after an outage.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

SPOOL_FILE = "telemetry-spool.sqlite"


class Spool:
    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max(1, int(max_bytes))
        self._lock = threading.Lock()
        self.path.touch(mode=0o600, exist_ok=True)  # job output travels through it: owner only
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS record (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)"
        )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'replica'").fetchone()
        if row is None:
            self.replica = uuid.uuid4().hex
            self._db.execute("INSERT INTO meta VALUES ('replica', ?)", (self.replica,))
        else:
            self.replica = row[0]
        count, size, last = self._db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0), max(seq) FROM record"
        ).fetchone()
        self.count, self.bytes = int(count), int(size)
        self.last_seq = int(last or 0)
        self.dropped = 0  # records dropped for room since start

    def append(self, bodies: list[bytes]) -> int:
        """Store records (in order); returns the seq of the last one (0 if none)."""
        if not bodies:
            return self.last_seq
        size = sum(len(b) for b in bodies)
        with self._lock:
            if self.bytes + size > self.max_bytes:
                self._make_room(self.bytes + size - int(self.max_bytes * 0.9))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.executemany("INSERT INTO record (body) VALUES (?)", [(b,) for b in bodies])
                del cur
                last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.count += len(bodies)
            self.bytes += size
            self.last_seq = int(last)
            return self.last_seq

    def _make_room(self, need: int) -> None:
        """Drop the oldest records until `need` bytes are free (caller holds the lock)."""
        freed, upto, n = 0, None, 0
        for seq, length in self._db.execute("SELECT seq, length(body) FROM record ORDER BY seq"):
            if freed >= need:
                break
            freed += int(length)
            upto, n = int(seq), n + 1
        if upto is None:
            return
        self._db.execute("DELETE FROM record WHERE seq <= ?", (upto,))
        self.count -= n
        self.bytes -= freed
        self.dropped += n
        log.warning(
            "telemetry buffer %s is full (limit %d bytes): dropped the %d oldest records (up to seq %d); "
            "the collector has not taken them",
            self.path,
            self.max_bytes,
            n,
            upto,
        )

    def peek(self, max_records: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """The oldest records, at most `max_records` and about `max_bytes` (always at least one)."""
        out: list[tuple[int, bytes]] = []
        total = 0
        with self._lock:
            for seq, body in self._db.execute("SELECT seq, body FROM record ORDER BY seq LIMIT ?", (max_records,)):
                if out and total + len(body) > max_bytes:
                    break
                out.append((int(seq), bytes(body)))
                total += len(body)
        return out

    def ack(self, upto: int) -> None:
        """The collector has every record up to `upto`: forget them."""
        with self._lock:
            n, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM record WHERE seq <= ?", (upto,)
            ).fetchone()
            self._db.execute("DELETE FROM record WHERE seq <= ?", (upto,))
            self.count -= int(n)
            self.bytes -= int(size)

    def close(self) -> None:
        with self._lock:
            self._db.close()
