"""``JobDb``: read-only queries on one job's ``state.db``, for assertions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class JobDb:
    """Read-only queries on one job's ``state.db``, a fresh connection per query."""

    def __init__(self, path: Path) -> None:
        assert path.is_file(), f"no database at {path}"
        self.path = path

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        assert rows, f"no row for {sql}"
        return next(iter(rows[0].values()))

    def job(self) -> dict[str, Any]:
        return self.rows("SELECT * FROM job")[0]

    def items(self, *, decode: bool = True) -> list[dict[str, Any]]:
        """Every frozen item in list order; its ``data`` decoded unless ``decode`` is
        False (then the stored JSON text, to compare byte for byte)."""
        rows = self.rows("SELECT * FROM items ORDER BY idx")
        if decode:
            for row in rows:
                row["data"] = json.loads(row["data"])
        return rows

    def item(self, item_id: str) -> dict[str, Any]:
        rows = self.rows("SELECT * FROM items WHERE item_id = ?", (item_id,))
        assert rows, f"no item {item_id!r}"
        return rows[0]

    def statuses(self) -> dict[str, str]:
        return {r["item_id"]: r["status"] for r in self.rows("SELECT item_id, status FROM items")}

    def item_ids_with(self, status: str) -> set[str]:
        return {item_id for item_id, found in self.statuses().items() if found == status}

    def attempts(self, item_id: str | None = None) -> list[dict[str, Any]]:
        """Attempts (of one item, or all), each with its item's id, in item then attempt
        order."""
        sql = (
            "SELECT a.*, i.item_id FROM attempts a JOIN items i ON i.idx = a.item_idx"
            + (" WHERE i.item_id = ?" if item_id is not None else "")
            + " ORDER BY a.item_idx, a.attempt_no"
        )
        return self.rows(sql, (item_id,) if item_id is not None else ())

    def steps(self, phase: str = "map") -> list[dict[str, Any]]:
        """The step records of one phase, in the order they were written."""
        return self.rows("SELECT * FROM steps WHERE phase = ? ORDER BY id", (phase,))

    def done_steps(self, phase: str) -> set[int]:
        """Indexes of the setup or reduce steps recorded as succeeded."""
        rows = self.rows(
            "SELECT step_index FROM phase_steps WHERE phase = ? AND status = 'succeeded'",
            (phase,),
        )
        return {r["step_index"] for r in rows}

    def runs(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM runs ORDER BY run_no")
