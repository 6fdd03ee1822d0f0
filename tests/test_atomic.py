"""The files the tool writes inside a dump or profile directory (issue 11, finding 5): never through a symlink,
FIFO or hard link planted at their fixed names, and nothing partial left when the disk is full. The capture
and the profiler fail open: the user's code runs on, the file outside stays as it was."""

import contextlib
import errno
import json
import os
import signal
import stat

import pytest
import torch

from ascend_tools import atomic
from ascend_tools.precision import capture, store
from ascend_tools.precision.shadow_session import shadow
from ascend_tools.profiling import profile

OUTSIDE = "precious: not the tool's to write\n"


@pytest.fixture
def outside(tmp_path):
    """A file outside the dump directory that a planted link points to."""
    path = tmp_path / "outside.txt"
    path.write_text(OUTSIDE)
    return path


def plant(link, target):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(target, link)


@contextlib.contextmanager
def no_hang(seconds=20):
    """Fail (SIGALRM) instead of hanging forever when an open blocks (a FIFO without a reader)."""

    def boom(*_):
        raise TimeoutError("blocked")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def files(root):
    """Every file under ``root``, relative to it."""
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def leftovers(root):
    """Temporary files (``*.tmp``) anywhere under ``root``."""
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".tmp")]


# --- open_append -------------------------------------------------------------------------------------------


def test_open_append_appends_and_truncates_a_plain_file(tmp_path):
    path = str(tmp_path / "events.jsonl")
    read = (tmp_path / "events.jsonl").read_text
    with atomic.open_append(path) as f:
        f.write("a\n")
    with atomic.open_append(path) as f:
        f.write("b\n")
    assert read() == "a\nb\n"
    with atomic.open_append(path, truncate=True) as f:
        f.write("c\n")
    assert read() == "c\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~atomic._umask()


@pytest.mark.parametrize("truncate", [False, True])
def test_open_append_refuses_a_symlink(tmp_path, outside, truncate):
    link = str(tmp_path / "records.jsonl")
    os.symlink(outside, link)
    with pytest.raises(OSError) as err:
        atomic.open_append(link, truncate=truncate)
    assert err.value.errno == errno.ELOOP
    assert outside.read_text() == OUTSIDE


@pytest.mark.parametrize("truncate", [False, True])
def test_open_append_refuses_a_hard_link_before_truncating(tmp_path, outside, truncate):
    link = str(tmp_path / "events.jsonl")
    os.link(outside, link)
    with pytest.raises(OSError, match="hard links"):
        atomic.open_append(link, truncate=truncate)
    assert outside.read_text() == OUTSIDE


def test_open_append_refuses_a_fifo_without_blocking(tmp_path):
    fifo = str(tmp_path / "stacks.jsonl")
    os.mkfifo(fifo)
    with no_hang(), pytest.raises(OSError) as err:
        atomic.open_append(fifo)
    assert err.value.errno == errno.ENXIO  # no reader: O_NONBLOCK makes the open fail instead of waiting


# --- open_atomic -------------------------------------------------------------------------------------------


def test_open_atomic_replaces_a_symlink_and_leaves_its_target_alone(tmp_path, outside):
    link = str(tmp_path / "meta.json")
    os.symlink(outside, link)
    atomic.write_json(link, {"rank": 0})
    assert outside.read_text() == OUTSIDE
    assert not os.path.islink(link) and json.loads((tmp_path / "meta.json").read_text()) == {"rank": 0}


class _Full:
    """A file object whose ``write``, ``flush`` or ``close`` fails with ENOSPC (the others pass through)."""

    def __init__(self, f, at):
        self._f, self._at = f, at

    def __getattr__(self, name):
        return getattr(self._f, name)

    def _maybe(self, where):
        if self._at == where:
            raise OSError(errno.ENOSPC, "No space left on device")

    def write(self, data):
        self._maybe("write")
        return self._f.write(data)

    def flush(self):
        self._maybe("flush")
        return self._f.flush()

    def close(self):
        self._f.close()
        self._maybe("close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize("at", ["write", "flush", "close"])
def test_open_atomic_leaves_nothing_on_enospc(tmp_path, monkeypatch, at):
    path = tmp_path / "meta.json"
    path.write_text('{"old": 1}')
    real = atomic._fdopen
    monkeypatch.setattr(atomic, "_fdopen", lambda fd, mode: _Full(real(fd, mode), at))
    with pytest.raises(OSError) as err, atomic.open_atomic(str(path), fsync=at == "flush") as f:
        f.write('{"new": 2}')
    assert err.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["meta.json"]
    assert path.read_text() == '{"old": 1}'


# --- the dump's writer (store.RankWriter) and the capture ----------------------------------------------


def test_write_meta_on_enospc_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Half of meta.json written, then the disk is full: the old meta.json stays, no ``meta.json.tmp``."""
    writer = store.RankWriter(str(tmp_path), 0)
    writer.write_meta({"rank": 0, "old": True})

    def dump_half(obj, f, **kw):
        f.write(json.dumps(obj, **kw)[:5])
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.json, "dump", dump_half)
    with pytest.raises(OSError):
        writer.write_meta({"rank": 0, "new": True})
    writer.close()
    assert sorted(os.listdir(tmp_path / "rank0")) == ["meta.json", "stacks.jsonl"]
    monkeypatch.undo()
    assert json.loads((tmp_path / "rank0" / "meta.json").read_text()) == {"rank": 0, "old": True}


@pytest.mark.parametrize("name", ["stacks.jsonl", "step0/records.jsonl", "meta.json.tmp", "meta.json"])
def test_a_capture_never_writes_through_a_planted_symlink(tmp_path, outside, name):
    out = tmp_path / "dump"
    plant(str(out / "rank0" / name), str(outside))
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with torch.no_grad(), capture(str(out)) as cap:
        c = torch.mm(a, b)  # the user's code runs
    assert torch.equal(c, a @ b)
    assert outside.read_text() == OUTSIDE
    assert json.loads((out / "rank0" / "meta.json").read_text())["rank"] == 0
    if name.endswith(".jsonl"):
        assert cap.internal_errors >= 1  # refused, counted, logged once
    if name != "step0/records.jsonl":  # only the refused file is lost
        records = (out / "rank0" / "step0" / "records.jsonl").read_text().splitlines()
        assert "aten::mm" in [json.loads(r)["name"] for r in records]


@pytest.mark.parametrize("name", ["rank0.jsonl", "rank0.meta.json"])
def test_shadow_never_writes_through_a_planted_symlink(tmp_path, outside, name):
    out = tmp_path / "shadow"
    plant(str(out / name), str(outside))
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with torch.no_grad(), shadow(out=str(out)) as sh:
        c = torch.mm(a, b)
    assert torch.equal(c, a @ b)
    assert sh.compared >= 1  # the shadow itself ran
    assert outside.read_text() == OUTSIDE


# --- the profiler --------------------------------------------------------------------------------------------


def test_a_profile_never_writes_through_a_planted_events_symlink(tmp_path, outside, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    out = tmp_path / "prof"
    plant(str(out / "rank0" / "events.jsonl"), str(outside))
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with profile(str(out), comm=False, hang_timeout=None) as prof:
        for _ in range(2):
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
    assert prof.step_no == 2  # the training ran to the end
    assert outside.read_text() == OUTSIDE
    meta = json.loads((out / "rank0" / "meta.json").read_text())
    assert meta["internal_errors"] >= 1 and meta["dropped"] >= 2 and meta["records"] == 0


# disk full (a real small tmpfs): tests/test_fault_suite.py
