"""Which revision of a Flagger Canary was called when: a revision left for another and called again starts over.

Why this exists (decision 441): Flagger names a revision by its checksum, a hash of the target's spec, and
restarts the analysis when the spec changes mid-analysis (`hasCanaryRevisionChanged`: all traffic to the primary,
then the new checksum from weight 0). A spec changed back (a revert) comes back with its old checksum, so its
revision's stored session is found again. `pre-rollout` starts such a revision over (`Service._restarted`), but a
Canary without that hook went on with it: its window opened at its last pass, before the other spec's pods ran
under the same `app` label (the canary arm's series), so its first look passed at once on them; its traffic hook,
spent on that old pass, was 412 at weight 0 for ever. For each Canary (`key`) a small file records when each of
its last revisions was first called after another one (`mark`); a session last written before another revision of
its Canary was called is taken for the earlier analysis.

Only Flagger's: it analyses one revision of a Canary at a time. Argo's revisions of one Rollout may be called by
turns (a metric per model, each with its own `revision`: docs/integrations.md).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from canary.filekind import read_regular

# a state file's bound: a session is a few KiB (its lists are capped: MAX_STEPS_SEEN, MAX_LEFT_INPUTS), a revisions
# file smaller still; past this it is no file this service wrote
MAX_STATE_BYTES = 16 << 20


def read_state(path: Path) -> str:
    """A state file's text (a session, a revisions file), read as a file read again is (`read_regular`, decision
    833): a FIFO, a device or a directory put in the state directory under a state file's name held the call that
    read it at the open (and every call of that revision after it, the read holding its lock; the prune, every
    one after it), `/dev/zero` linked there filled the memory. OSError (FileNotFoundError when there is none; EFBIG
    past MAX_STATE_BYTES), UnicodeDecodeError."""
    data = read_regular(path, MAX_STATE_BYTES)
    if len(data) > MAX_STATE_BYTES:
        raise OSError(errno.EFBIG, f"too large: more than {MAX_STATE_BYTES >> 20} MiB, no state file this service "
                                   "wrote", str(path))
    return data.decode("utf-8")


def write_atomically(path: Path, text: str) -> None:
    """`text` as `path`'s content, all or nothing: a temporary `.tmp-*` file beside it (its suffix: never read as a
    session or a revisions file), fsynced, renamed over `path`; OSError when the directory refuses."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


MAX_KEPT = 16  # revisions remembered per Canary (the oldest dropped: only the latest can be newer than a session)


class CurrentRevisions:
    """`<hash of key>.key` files in the state directory (never `*.json`: not sessions, not counted by
    `--max-revisions`); one process writes them (`SessionStore.hold`), its threads under one lock."""

    def __init__(self, directory: Path, *, cap: int = 0, live: Callable[[], set[str]] | None = None) -> None:
        self.dir = directory
        self._lock = threading.Lock()
        # past `cap` files, a new one first drops those of Canaries `live()` says no session is stored of: a call is
        # marked before it is judged, a refused one too, so a caller naming a new Canary at each call grew the
        # directory without bound (decision 474). Such a file restarts nothing: a session stored later is written
        # after every mark in it
        self.cap, self._live = cap, live

    def path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.key"

    def mark(self, key: str, revision: str, now: float) -> dict[str, float]:
        """Record that `revision` of `key` is called at `now`; the times each revision of `key` was first called
        after another, as they were before this call. Written only when `revision` was not the last one called,
        so a Canary's steady calls write nothing. An unreadable file is taken as empty (it is rewritten); OSError
        when the directory refuses the write."""
        with self._lock:
            since = self._read(key)
            if since and max(since, key=lambda r: since[r]) == revision:
                return since
            kept = dict(sorted({**since, revision: now}.items(), key=lambda kv: kv[1])[-MAX_KEPT:])
            if not since:
                self._make_room(key)
            self._write(key, kept)
            return since

    def _make_room(self, key: str) -> None:
        """Before `key`'s file is written anew: with `cap` files or more, delete those whose Canary has no session
        stored (`live()`); what is left is at most one a Canary with a session, so never more than the store's
        sessions, plus one. (Under the lock.)"""
        if not self.cap or self._live is None:
            return
        names = [p for p in self.dir.glob("*.key") if not p.name.startswith(".") and p != self.path(key)]
        if len(names) < self.cap:
            return
        live = self._live()
        for p in names:
            try:
                d = json.loads(read_state(p))
                if not (isinstance(d, dict) and d.get("key") in live):
                    p.unlink()
            except (OSError, ValueError):
                continue

    def _read(self, key: str) -> dict[str, float]:
        try:
            d = json.loads(read_state(self.path(key)))
        except (OSError, ValueError):
            return {}
        since = d.get("since") if isinstance(d, dict) and d.get("key") == key else None
        if not isinstance(since, dict):
            return {}
        return {str(r): float(t) for r, t in since.items()
                if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)}

    def _write(self, key: str, since: dict[str, float]) -> None:
        write_atomically(self.path(key), json.dumps({"key": key, "since": since}, sort_keys=True))

    def prune(self, *, older_than_s: float, now: float, host_now: float | None = None) -> int:
        """Delete the files of Canaries not called for `older_than_s` by both clocks (the file's time on the host's,
        the latest recorded time on the service's), as `SessionStore.prune` deletes sessions; how many."""
        host = time.time() if host_now is None else host_now
        gone = 0
        with self._lock:
            for p in self.dir.glob("*.key"):
                if p.name.startswith("."):
                    continue
                try:
                    if p.stat().st_mtime >= host - older_than_s:
                        continue
                    d = json.loads(read_state(p))
                    times = list(d["since"].values()) if isinstance(d, dict) and isinstance(d.get("since"), dict) else []
                    if any(not isinstance(t, (int, float)) or now - t < older_than_s for t in times):
                        continue
                    p.unlink()
                    gone += 1
                except (OSError, ValueError):
                    continue
        return gone
