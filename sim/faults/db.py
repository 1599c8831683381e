"""Campaign results in SQLite (WAL, one writer): the plan and the results, keyed by
deterministic fault ids, so a killed campaign resumes with nothing lost or counted twice."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import astuple, fields

from .models import Fault

__all__ = ["CampaignDB", "DBError"]

_FAULT_COLS = [f.name for f in fields(Fault)]
_RESULT_COLS = ["outcome", "error", "latent", "end_cycle", "converged", "out_bytes",
                "layer_rel_err", "block_rel_err", "top1_changed", "wall_ms"]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS strata (name TEXT PRIMARY KEY, bits INTEGER, population INTEGER,
                                   planned INTEGER);
CREATE TABLE IF NOT EXISTS faults (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL,
    {', '.join(c + (' TEXT' if c in ('structure', 'element', 'model') else ' INTEGER')
               for c in _FAULT_COLS)});
CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY REFERENCES faults(id),
    outcome TEXT NOT NULL, error TEXT, latent INTEGER, end_cycle INTEGER, converged INTEGER,
    out_bytes INTEGER, layer_rel_err REAL, block_rel_err REAL, top1_changed INTEGER,
    wall_ms REAL);
"""


class DBError(RuntimeError):
    pass


class CampaignDB:
    def __init__(self, path):
        self.path = str(path)
        try:
            self.con = sqlite3.connect(self.path, timeout=60)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")
            self.con.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise DBError(f"{path}: not a campaign database ({e})") from None

    def close(self):
        self.con.close()

    # --- meta ----------------------------------------------------------------------------
    def meta(self, key, default=None):
        row = self.con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key, value):
        with self.con:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # --- plan ----------------------------------------------------------------------------
    def has_plan(self):
        return self.meta("spec") is not None

    def write_plan(self, spec: dict, info: dict, strata: dict, faults):
        """All in one transaction: a plan is there completely or not at all."""
        with self.con:
            self.con.execute("INSERT INTO meta VALUES ('spec', ?)", (json.dumps(spec),))
            self.con.execute("INSERT INTO meta VALUES ('info', ?)", (json.dumps(info),))
            self.con.executemany("INSERT INTO strata VALUES (?, ?, ?, ?)",
                                 [(k, v["bits"], v["population"], v["planned"])
                                  for k, v in strata.items()])
            self.con.executemany(
                f"INSERT INTO faults VALUES ({', '.join('?' * (2 + len(_FAULT_COLS)))})",
                [(fid, seq, *astuple(f)) for seq, (fid, f) in enumerate(faults)])

    def pending(self):
        """[(id, Fault)] planned but without a result, in plan order."""
        rows = self.con.execute(
            f"SELECT f.id, {', '.join('f.' + c for c in _FAULT_COLS)} FROM faults f "
            "LEFT JOIN results r ON r.id = f.id WHERE r.id IS NULL ORDER BY f.seq").fetchall()
        return [(r[0], Fault(*r[1:])) for r in rows]

    def fault(self, fid):
        """The planned Fault with id ``fid``, or None."""
        r = self.con.execute(f"SELECT {', '.join(_FAULT_COLS)} FROM faults WHERE id = ?",
                             (fid,)).fetchone()
        return Fault(*r) if r else None

    def result(self, fid):
        """The result of fault ``fid`` as a dict, or None when it has not run."""
        r = self.con.execute(f"SELECT {', '.join(_RESULT_COLS)} FROM results WHERE id = ?",
                             (fid,)).fetchone()
        return dict(zip(_RESULT_COLS, r)) if r else None

    def counts(self):
        planned = self.con.execute("SELECT COUNT(*) FROM faults").fetchone()[0]
        done = self.con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return planned, done

    # --- results -------------------------------------------------------------------------
    def add_results(self, batch):
        """``batch``: [(fault id, result dict)], written in one transaction."""
        with self.con:
            self.con.executemany(
                f"INSERT INTO results VALUES (?, {', '.join('?' * len(_RESULT_COLS))})",
                [(fid, *(r.get(c) for c in _RESULT_COLS)) for fid, r in batch])

    def strata(self):
        return {r[0]: {"bits": r[1], "population": r[2], "planned": r[3]}
                for r in self.con.execute("SELECT * FROM strata ORDER BY name")}

    def joined(self):
        """Every fault with its result (None columns when not run yet), as dicts."""
        cols = ["id", "seq", *_FAULT_COLS, *_RESULT_COLS]
        q = (f"SELECT f.id, f.seq, {', '.join('f.' + c for c in _FAULT_COLS)}, "
             f"{', '.join('r.' + c for c in _RESULT_COLS)} FROM faults f "
             "LEFT JOIN results r ON r.id = f.id ORDER BY f.seq")
        return [dict(zip(cols, row)) for row in self.con.execute(q)]
