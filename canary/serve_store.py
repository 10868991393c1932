"""Where `canary serve` keeps each rollout revision's Session: one JSON file per revision.

Why files (docs/decisions.md): the service must survive its own restart with each rollout's
evidence intact, and it runs beside Argo Rollouts or Flagger without any Kubernetes write
access of its own. A file is written whole to a temporary name, fsynced and renamed over the
old one, so a process killed at any instant leaves the previous look or the new one, never a
mix. One file per revision keeps a write small and lets revisions be written in parallel; the
caller serialises the looks of one revision (`lock`).

A file that cannot be read is an error (`StoreError`), never a fresh start: starting over
would forget the failure evidence and the failed looks, and spend the error budget again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from canary.errors import CanaryError
from canary.serve_current import CurrentRevisions, read_state, write_atomically
from canary.serve_session import Session


class StoreError(CanaryError):
    """A stored session exists but cannot be read or written (the message names the file)."""


class RevisionBusy(CanaryError):
    """Another call for the same revision held it past the wait this call had (`lock(timeout=)`)."""


class StoreFull(CanaryError):
    """A new revision met `max_revisions` sessions, none of them finished (`create`): not started."""


MAX_REVISIONS = 1000


class _Slot:
    """A revision's lock, how many calls hold or wait on it, and the last answer one of them shared (`Turn`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.shared = 0  # how many answers were shared while the slot lived
        self.last: Any = None  # the last one (`Turn.share`)


class Turn:
    """One call's hold of a revision (`SessionStore.lock`): what a call that held it since this one arrived
    shared. Lives as long as some call holds or waits on the revision, so only calls that overlapped meet."""

    def __init__(self, slot: _Slot, seen: int) -> None:
        self._slot, self._seen = slot, seen

    def since_arrival(self) -> Any:
        """The last answer `share`d by a call that held the revision after this one arrived (it was being
        answered while this one waited), None when there is none. (Called with the revision held.)"""
        return self._slot.last if self._slot.shared > self._seen else None

    def share(self, answer: Any) -> None:
        """Offer `answer` to the calls waiting on the revision now (`since_arrival`). (Called with it held.)"""
        self._slot.shared += 1
        self._slot.last = answer


class SessionStore:
    """Sessions under `directory`, named by a hash of (key, revision).

    A `directory` that does not exist is created, itself only (`created` says so: `serve.started`'s
    `state_dir_created`); one whose parent does not exist either is a StoreError: a mistyped path, or a volume
    mounted elsewhere, kept the state in a tree created silently on the container's own disk (decision 292).

    At most `max_revisions` of them (`create`): every caller names its own revisions, so without a
    cap any client could fill the volume one new checksum at a time (then every call is a 500).
    """

    def __init__(self, directory: str | Path, *, max_revisions: int = MAX_REVISIONS) -> None:
        if max_revisions < 1:
            raise StoreError(f"--max-revisions must be at least 1, got {max_revisions}")
        self.dir = Path(directory)
        self.max_revisions = max_revisions
        self._creating = threading.Lock()  # one new revision at a time: the count and its file agree
        self.created = False  # this process created the directory: nothing was kept there before
        try:
            if not self.dir.is_dir():
                self.dir.mkdir()
                self.created = True
        except FileNotFoundError:
            raise StoreError(f"{self.dir}: its parent {self.dir.parent} does not exist: give --state-dir an existing "
                             "directory (the mounted volume) or a new one inside an existing one; a whole new path is "
                             "not created (a mistyped or unmounted path would keep the state where no restart "
                             "finds it)") from None
        except OSError as exc:
            raise StoreError(f"{self.dir}: cannot create the state directory: {exc.strerror or exc}") from None
        if not os.access(self.dir, os.W_OK):
            raise StoreError(f"{self.dir}: the state directory is not writable")
        # one lock per revision in use, dropped when no call holds or waits on it (bounded by the calls
        # in flight): 64 striped locks made an unrelated revision wait on a slow one that shared its stripe
        self._guard = threading.Lock()
        self._locks: dict[str, _Slot] = {}
        self._held: int | None = None  # the descriptor of `hold()`'s lock file while this process holds it
        # which revision of a Flagger Canary was called when (decision 441), kept for the Canaries with a session
        # once past max_revisions of them (decision 474)
        self.current = CurrentRevisions(self.dir, cap=max_revisions, live=self._session_keys)

    def hold(self) -> None:
        """Make this process the directory's only writer, for as long as it runs: an exclusive `flock` on
        `.serve.lock` (released by the kernel when the process ends, however it ends). Every revision is
        a read-modify-write under `lock`, which only serialises the threads of one process: two `canary
        serve` processes on one state directory (two replicas on a shared volume, a second one started
        by hand) lost each other's looks, so a failed look, its failure count and its evidence could be
        overwritten by the other's pass computed from the session before it. StoreError, naming the
        directory and the holder's pid, when another process holds it."""
        from canary.pidlock import Held, hold

        path = self.dir / ".serve.lock"
        try:
            self._held = hold(path)
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the state directory's lock: {exc.strerror or exc}") from None
        except Held as held:
            raise StoreError(f"{self.dir}: the state directory is in use by another `canary serve` (pid "
                             f"{held.holder}); run one process per state directory (one replica: "
                             "docs/integrations.md)") from None

    def release(self) -> None:
        """Give up `hold()` (the process ending does it too)."""
        if self._held is not None:
            os.close(self._held)
            self._held = None

    def path(self, key: str, revision: str) -> Path:
        digest = hashlib.sha256(f"{key}\0{revision}".encode()).hexdigest()[:40]
        return self.dir / f"{digest}.json"

    @contextmanager
    def lock(self, key: str, revision: str, *, timeout: float = -1) -> Iterator[Turn]:
        """Held by every read-modify-write of this revision (looks of one revision in order), and by
        nothing else: calls for other revisions never wait on it. RevisionBusy when it cannot be had
        within `timeout` seconds (-1: wait for as long as it takes). Yields this call's `Turn`: the
        answer a call that held the revision while this one waited shared, if any."""
        name = self.path(key, revision).stem
        with self._guard:
            slot = self._locks.setdefault(name, _Slot())
            slot.users += 1
            turn = Turn(slot, slot.shared)
        try:
            if not slot.lock.acquire(timeout=max(timeout, 0.0) if timeout >= 0 else -1):
                raise RevisionBusy(f"another call for {key} revision {revision} is still being answered "
                                   f"(waited {max(timeout, 0.0):.1f}s for it)")
            try:
                yield turn
            finally:
                slot.lock.release()
        finally:
            with self._guard:
                slot.users -= 1
                if slot.users == 0:
                    del self._locks[name]

    def load(self, key: str, revision: str) -> Session | None:
        """The stored session, None when there is none; StoreError when it exists but is unreadable."""
        p = self.path(key, revision)
        try:
            text = read_state(p)
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc  # OSError's own words, not its "[Errno 22] ... '<path>'"
            raise StoreError(f"{p}: cannot read the stored state of {key} revision {revision}: {why}") from None
        try:
            s = Session.from_json(text)
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise StoreError(f"{p}: the stored state of {key} revision {revision} is unreadable ({exc}); "
                             "delete the file to start this revision over") from None
        if (s.key, s.revision) != (key, revision):
            raise StoreError(f"{p}: holds {s.key} revision {s.revision}, not {key} revision {revision}")
        return s

    def create(self, s: Session, *, finished: Callable[[Session], bool]) -> list[Session]:
        """Save a revision that has no file yet, making room when `max_revisions` files exist: the
        finished sessions (`finished(s)`: failed, or called no more) are deleted oldest first
        (`updated_at`), one in use by a call never; StoreFull when none is finished. The sessions
        deleted. (Called under the revision's `lock`.)"""
        with self._creating:
            pruned: list[Session] = []
            names = [p for p in self.dir.glob("*.json") if not p.name.startswith(".")]
            if len(names) >= self.max_revisions:
                pruned = self._make_room(names, len(names) - self.max_revisions + 1, finished)
            self.save(s)
            return pruned

    def _make_room(self, names: list[Path], need: int, finished: Callable[[Session], bool]) -> list[Session]:
        with self._guard:
            busy = set(self._locks)
        done = []
        for p in names:
            if p.stem in busy:
                continue
            try:
                seen = p.stat()
                s = Session.from_json(read_state(p))
            except (OSError, ValueError, TypeError):
                continue  # unreadable: kept for a person to look at (a call for it is a 500 naming it)
            if finished(s):
                done.append((s.updated_at, p.name, p, s, seen))
        done.sort(key=lambda d: (d[0], d[1]))
        pruned = []
        for _, _, p, s, seen in done[:need]:
            if self._delete_as_read(p, seen):
                pruned.append(s)
        if len(pruned) < need:
            raise StoreFull(f"the state directory {self.dir} holds {len(names) - len(pruned)} revisions "
                            f"(--max-revisions {self.max_revisions}) and none more is finished (failed, or not called "
                            "for longer than its policy's interval + no_data_deadline): a new revision is not started "
                            "until one is; raise --max-revisions if this many rollouts really run at once")
        return pruned

    def save(self, s: Session) -> None:
        """Write atomically (temporary file, fsync, rename); StoreError if the disk refuses."""
        p = self.path(s.key, s.revision)
        try:
            write_atomically(p, s.to_json())
        except OSError as exc:
            raise StoreError(f"{p}: cannot write the state of {s.key} revision {s.revision}: "
                             f"{exc.strerror or exc}") from None

    def prune(self, *, older_than_s: float, now: float, host_now: float | None = None,
              stopped: Callable[[], bool] | None = None) -> int:
        """Delete the sessions idle for `older_than_s` seconds by both clocks that can say so; how many.

        Idle by the session's own last write (`updated_at`) against `now`, the service's clock (Prometheus's,
        on which the session's times were written), and by its file's time against the host's clock (`host_now`,
        default `time.time()`). The file's time alone was the rule: a host clock ahead by more than the TTL (a VM
        resumed before NTP, a clock set by hand) deleted every live session at start-up, a rollout's evidence and
        failed looks gone, a shown fail forgotten and judged again as a new revision (decision 166). Either clock
        ahead alone now deletes nothing. A file that cannot be read is kept for a person (a call for it is a
        500 naming it), as `_make_room` keeps it; so is a revision a call holds, or wrote since it was read (asked
        again just before each delete, `_delete_as_read`: `canary serve` prunes while it serves, every
        `serve_prune.every_s`). Once `stopped()` says so, nothing more is deleted (the service stopped)."""
        host = time.time() if host_now is None else host_now
        with self._guard:
            busy = set(self._locks)
        gone = 0
        for p in self.dir.glob("*.json"):
            if p.name.startswith(".") or p.stem in busy:
                continue
            try:
                seen = p.stat()
                if seen.st_mtime >= host - older_than_s:
                    continue
                s = Session.from_json(read_state(p))
            except (OSError, ValueError, TypeError):
                continue  # another replica, a concurrent write, or unreadable: kept
            if now - s.updated_at < older_than_s:
                continue  # written within the TTL on the clock it was written with
            if stopped is not None and stopped():
                break
            if self._delete_as_read(p, seen, missing=False):
                gone += 1
        if stopped is None or not stopped():
            self.current.prune(older_than_s=older_than_s, now=now, host_now=host)
        return gone

    def _session_keys(self) -> set[str]:
        """The Canaries (and Rollouts) whose sessions are stored, as their files say; an unreadable file names none."""
        keys = set()
        for p in self.dir.glob("*.json"):
            if p.name.startswith("."):
                continue
            try:
                d = json.loads(read_state(p))
            except (OSError, ValueError):
                continue
            if isinstance(d, dict) and isinstance(d.get("key"), str):
                keys.add(d["key"])
        return keys

    def others_called(self, key: str, revision: str, now: float) -> dict[str, float]:
        """`CurrentRevisions.mark`: when each revision of Flagger Canary `key` was first called after another, as
        before this call of `revision` at `now`; StoreError when the directory refuses the write."""
        try:
            return self.current.mark(key, revision, now)
        except OSError as exc:
            raise StoreError(f"{self.current.path(key)}: cannot record which revision of {key} is called: "
                             f"{exc.strerror or exc}") from None

    def _delete_as_read(self, p: Path, seen: os.stat_result, *, missing: bool = True) -> bool:
        """Delete the session file `p` as it was when read (`seen`: its `stat()` taken before the read), under the
        store's guard: kept when a call holds its revision now, or wrote it since (`save` renames a new file over
        it: another inode). Asking only whether a call holds it now let a whole call land between the read and the
        delete (it took the revision, wrote its look and let go): the prune, or `create` making room, deleted the
        look just written, judged on the session read before it. Whether it is gone: `missing` when it already was
        (another deleter); False when kept or the disk refused."""
        with self._guard:
            if p.stem in self._locks:
                return False
            try:
                now = p.stat()
                if (now.st_ino, now.st_dev, now.st_mtime_ns, now.st_size) != (
                        seen.st_ino, seen.st_dev, seen.st_mtime_ns, seen.st_size):
                    return False
                p.unlink()
            except FileNotFoundError:
                return missing
            except OSError:
                return False
            return True
