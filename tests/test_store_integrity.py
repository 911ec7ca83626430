"""Store integrity under injected faults: flipped bytes, truncated and lying manifests, a concurrent and a failed
store.json, full disks at every step of a commit, timestamps in the wrong unit and huge bad CSV fields.

Everything is real: real Parquet parts with real flipped bytes, real processes, a real full tmpfs where the
machine allows mounting one (skipped cleanly where not), and ``OSError(ENOSPC)`` raised from the store's own
I/O calls to hit each step of a commit exactly.
"""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT
from test_store import candles

from workbench.data import store as store_mod
from workbench.data.audit import audit, list_series
from workbench.data.files import FileFormatError, import_candles
from workbench.data.store import Store, StoreCorruptError, StoreError

T0 = 1_704_067_200_000  # 2024-01-01
M5 = 300_000
H = 3_600_000


def series(tmp_path: Path, n: int = 20_000) -> tuple[Store, object, pd.DataFrame]:
    """A store with one 5m series of ``n`` bars (20,000 bars: 3 monthly parts)."""
    s = Store(tmp_path / "store")
    k = s.key("candles", "test", "X/USDT", "5m")
    df = candles(n)
    s.write(k, df)
    return s, k, df


def part_paths(s: Store, k) -> list[Path]:
    d = s.series_dir(k)
    return [d / "parts" / p["file"] for p in s.manifest(k)["parts"]]


def files_under(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


def same_as(s: Store, k, df: pd.DataFrame) -> None:
    got = s.read_table(k).to_pandas()
    pd.testing.assert_frame_equal(got, df.reset_index(drop=True), check_exact=True)


def enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) if path else None)


# ------------------------------------------------------------------------------------------ item 7: parts


def test_a_flipped_byte_anywhere_in_a_part_raises_and_never_returns_data(tmp_path) -> None:
    s, k, df = series(tmp_path)
    path = part_paths(s, k)[1]
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    # the magic, the first page, 60 random spots in the data pages, and the footer
    positions = sorted(
        {0, 5, len(good) // 3, len(good) - 1, len(good) - 9, *rng.integers(0, len(good), 60).tolist()}
    )
    for pos in positions:
        bad = bytearray(good)
        bad[pos] ^= 0x10
        path.write_bytes(bytes(bad))
        for read in (
            lambda: s.read_table(k),
            lambda: s.candles("test", "X/USDT", "5m"),
            lambda: s.sql("SELECT sum(close) FROM candles"),
        ):
            with pytest.raises(StoreCorruptError) as e:
                read()
            assert str(k) in str(e.value) and str(path) in str(e.value), pos
        # a read of another month does not touch the bad part and still works
        assert len(s.candles("test", "X/USDT", "5m", end="2024-02-01")) == 31 * 288
        path.write_bytes(good)
    same_as(s, k, df)


@pytest.mark.slow
def test_a_part_changed_on_disk_is_caught_by_a_fresh_process_even_with_its_mtime_kept(tmp_path) -> None:
    s, k, df = series(tmp_path)
    same_as(s, k, df)  # verified (and cached) in this process
    path = part_paths(s, k)[0]
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    code = (
        "import sys\nfrom workbench.data.store import Store, StoreCorruptError\n"
        f"s = Store({str(s.root)!r})\n"
        "try:\n    s.candles('test', 'X/USDT', '5m')\nexcept StoreCorruptError as e:\n    print(e); sys.exit(3)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stdout + p.stderr
    assert str(path) in p.stdout and "checksum" in p.stdout


def test_a_truncated_or_swapped_part_is_refused(tmp_path) -> None:
    s, k, _ = series(tmp_path)
    a, b, _c = part_paths(s, k)
    good = a.read_bytes()
    a.write_bytes(good[: len(good) // 2])
    with pytest.raises(StoreCorruptError, match="bytes on disk"):
        s.read_table(k)
    shutil.copyfile(b, a)  # a whole valid Parquet file, but not the one the manifest lists
    with pytest.raises(StoreCorruptError, match=str(a)):
        s.read_table(k)


def test_a_manifest_whose_rows_disagree_with_the_part_is_refused(tmp_path) -> None:
    s, k, _ = series(tmp_path)
    mpath = s.series_dir(k) / "manifest.json"
    m = json.loads(mpath.read_text())
    m["parts"][0]["rows"] += 1
    mpath.write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match=r"it holds 8928 rows, the manifest lists 8929"):
        s.read_table(k)
    m["parts"][0]["rows"] -= 1
    m["parts"][0]["max_ts"] += M5
    mpath.write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match="ts range"):
        s.read_table(k)


def test_parts_without_checksums_are_read_with_footer_checks_a_warning_and_fixed_by_verify(
    tmp_path, caplog
) -> None:
    s, k, df = series(tmp_path)
    mpath = s.series_dir(k) / "manifest.json"
    m = json.loads(mpath.read_text())
    m["schema_version"] = 1
    for p in m["parts"]:
        del p["checksum"], p["bytes"]
    mpath.write_text(json.dumps(m))
    (s.root / "store.json").write_text(json.dumps({"schema_version": 1, "format": "workbench-store"}))
    s = Store(s.root)
    with caplog.at_level(logging.WARNING, logger="workbench.data.store"):
        same_as(s, k, df)
        same_as(s, k, df)
    warnings = [r for r in caplog.records if "no checksum" in r.getMessage()]
    assert len(warnings) == 1 and "verify --fix" in warnings[0].getMessage()
    # the footer is still checked against the manifest
    truth = m["parts"][2]["rows"]
    m["parts"][2]["rows"] = 5
    mpath.write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match="the manifest lists 5"):
        s.read_table(k)
    m["parts"][2]["rows"] = truth
    mpath.write_text(json.dumps(m))
    rep = s.verify()
    assert rep.ok and rep.unverified == 3 and rep.fixed == 0
    rep = s.verify(fix=True)
    assert rep.ok and rep.fixed == 3
    assert json.loads((s.root / "store.json").read_text())["schema_version"] == store_mod.SCHEMA_VERSION
    m = s.manifest(k)
    assert m["schema_version"] == store_mod.SCHEMA_VERSION and all("checksum" in p for p in m["parts"])
    same_as(s, k, df)
    # and now a flipped byte in those parts is caught
    path = part_paths(s, k)[0]
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="checksum"):
        s.read_table(k)


def test_a_corrupt_part_is_never_merged_into_a_new_one(tmp_path) -> None:
    s, k, df = series(tmp_path)
    path = part_paths(s, k)[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    before = s.manifest(k)
    upd = df.iloc[10:20].assign(volume=1.0)
    with pytest.raises(StoreCorruptError, match=str(path)):
        s.write(k, upd)
    assert s.manifest(k) == before


def test_parts_are_verified_once_per_process_and_then_only_stat(tmp_path, monkeypatch) -> None:
    s, k, df = series(tmp_path)
    calls: list[str] = []
    real = Store._check_part

    def spy(self, key, path, part, kind, data):
        calls.append(path.name)
        return real(self, key, path, part, kind, data)

    monkeypatch.setattr(Store, "_check_part", spy)
    same_as(s, k, df)
    assert len(calls) == 3
    same_as(s, k, df)
    s.sql("SELECT count(*) FROM candles")
    Store(s.root).candles("test", "X/USDT", "5m")  # another Store object in the same process
    assert len(calls) == 3
    s.write(k, df.iloc[:10].assign(volume=5.0))  # a new part: verified when first read
    same_as(s, k, pd.concat([df.iloc[:10].assign(volume=5.0), df.iloc[10:]]))
    assert len(calls) == 4


def test_verify_scrubs_the_store_and_drop_damaged_lets_the_period_be_imported_again(tmp_path) -> None:
    s, k, df = series(tmp_path)
    k2 = s.key("trades", "test", "X/USDT")
    s.write(
        k2,
        pd.DataFrame(
            {
                "ts": [T0, T0 + 1],
                "id": ["a", "b"],
                "price": [1.0, 2.0],
                "amount": [1.0, 1.0],
                "side": ["buy", "sell"],
            }
        ),
    )
    rep = s.verify()
    assert rep.ok and (rep.series, rep.parts) == (2, 4) and rep.bytes > 0
    bad = part_paths(s, k)[1]
    data = bytearray(bad.read_bytes())
    data[-20] ^= 0xFF
    bad.write_bytes(bytes(data))
    rep = s.verify()
    assert [(p["series"], p["file"]) for p in rep.problems] == [(str(k), str(bad))]
    with pytest.raises(StoreCorruptError):
        s.read_table(k)
    rep = s.verify(drop_damaged=True)
    assert rep.dropped == 1 and (s.series_dir(k) / "damaged" / bad.name).is_file()
    got = s.candles("test", "X/USDT", "5m")
    assert (
        len(got) == 20_000 - 29 * 288 and not ((got.index >= "2024-02-01") & (got.index < "2024-03-01")).any()
    )
    feb = (T0 + 31 * 86_400_000, T0 + 60 * 86_400_000)
    assert all(b <= feb[0] or a >= feb[1] for a, b in s.coverage(k))  # February is to be fetched again
    assert s.verify().ok
    s.write(k, df)
    same_as(s, k, df)


@pytest.mark.slow
def test_data_verify_command_exit_codes(tmp_path) -> None:
    s, k, _ = series(tmp_path)
    cmd = [sys.executable, "-m", "workbench.cli", "--home", str(s.root), "data", "verify"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0 and "3 parts" in p.stdout and "no problems" in p.stdout, p.stdout + p.stderr
    bad = part_paths(s, k)[2]
    data = bytearray(bad.read_bytes())
    data[50] ^= 1
    bad.write_bytes(bytes(data))
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 1 and f"damaged: {k}: {bad}: checksum" in p.stdout, p.stdout + p.stderr
    assert "1 problem" in p.stdout
    other = s.key("candles", "test", "Y/USDT", "5m")
    s.write(other, candles(100))
    mpath = s.series_dir(other) / "manifest.json"
    mpath.write_bytes(mpath.read_bytes()[:-5])
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 1 and f"{mpath}: corrupt manifest" in p.stdout and "2 problem" in p.stdout, (
        p.stdout
    )


# ------------------------------------------------------------------------------------------ item 8: manifests


@pytest.mark.parametrize("cut", [0, 1, 40, -2])
def test_a_truncated_manifest_is_a_loud_error_naming_it(tmp_path, cut) -> None:
    s, k, _ = series(tmp_path)
    s.write(s.key("candles", "test", "Y/USDT", "5m"), candles(100))
    mpath = s.series_dir(k) / "manifest.json"
    raw = mpath.read_bytes()
    mpath.write_bytes(raw[:cut])
    for call in (
        s.series,
        lambda: list_series(s),
        lambda: audit(s),
        lambda: s.sql("SELECT count(*) FROM candles"),
        lambda: s.read_table(k),
    ):
        with pytest.raises(StoreCorruptError, match=str(mpath)):
            call()


def test_a_flipped_bit_anywhere_in_the_manifest_raises_or_reads_the_same_rows(tmp_path) -> None:
    s, k, df = series(tmp_path)
    mpath = s.series_dir(k) / "manifest.json"
    good = mpath.read_bytes()
    outcomes = {"error": 0, "same": 0}
    for pos in range(0, len(good), 5):
        bad = bytearray(good)
        bad[pos] ^= 0x01
        mpath.write_bytes(bytes(bad))
        try:
            got = s.read_table(k).to_pandas()
        except StoreError:
            outcomes["error"] += 1
            continue
        pd.testing.assert_frame_equal(got, df, check_exact=True, obj=f"flip at byte {pos}")
        outcomes["same"] += 1
    mpath.write_bytes(good)
    assert outcomes["error"] > 0 and outcomes["same"] > 0, outcomes  # both happen: the test looked at both


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("parts"), "no 'parts' list"),
        (lambda m: m.update(parts={}), "no 'parts' list"),
        (lambda m: m["parts"][0].pop("max_ts"), "no valid 'max_ts'"),
        (lambda m: m["parts"][0].update(rows="8928"), "no valid 'rows'"),
        (lambda m: m["parts"][0].update(file="../../../x.parquet"), "no valid 'file'"),
        (lambda m: m["parts"][0].update(checksum="md5:00"), "invalid checksum"),
        (lambda m: m.update(symbol=None), "no valid 'symbol'"),
        (lambda m: m.update(coverage=[[1]]), "invalid 'coverage'"),
    ],
)
def test_a_manifest_missing_what_a_snapshot_needs_is_refused(tmp_path, edit, message) -> None:
    s, k, _ = series(tmp_path)
    mpath = s.series_dir(k) / "manifest.json"
    m = json.loads(mpath.read_text())
    edit(m)
    mpath.write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match=message) as e:
        s.series()
    assert str(mpath) in str(e.value)


@pytest.mark.slow
def test_cli_ls_audit_sql_fail_loudly_on_a_truncated_manifest(tmp_path) -> None:
    s, k, _ = series(tmp_path)
    mpath = s.series_dir(k) / "manifest.json"
    mpath.write_bytes(mpath.read_bytes()[:100])
    for args in (["data", "ls"], ["data", "audit"], ["data", "sql", "SELECT count(*) FROM candles"]):
        p = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "--home", str(s.root), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert "corrupt manifest" in p.stderr and "manifest.json" in p.stderr, (args, p.stderr)


# ------------------------------------------------------------------------------------------ item 9: store.json


def _open_rounds(root: str, rounds: int, barrier, errors) -> None:
    for r in range(rounds):
        barrier.wait(timeout=120)
        try:
            Store(os.path.join(root, f"s{r}"))
        except Exception as e:  # every failure to open is the finding
            errors.put(f"round {r}: {type(e).__name__}: {e}")


@pytest.mark.slow
def test_concurrent_processes_opening_a_fresh_store_all_succeed(tmp_path) -> None:
    ctx = mp.get_context("fork")
    n_proc, rounds = 6, 300
    barrier, errors = ctx.Barrier(n_proc), ctx.Queue()
    procs = [
        ctx.Process(target=_open_rounds, args=(str(tmp_path), rounds, barrier, errors)) for _ in range(n_proc)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    for r in range(rounds):
        assert json.loads((tmp_path / f"s{r}" / "store.json").read_text())["schema_version"] == 2
        assert [f.name for f in (tmp_path / f"s{r}").iterdir() if f.name.startswith(".")] == []


def test_store_json_on_a_failing_disk_leaves_nothing_and_a_retry_works(tmp_path, monkeypatch) -> None:
    root = tmp_path / "data"
    real = os.fsync
    monkeypatch.setattr(store_mod.os, "fsync", lambda fd: (_ for _ in ()).throw(enospc()))
    with pytest.raises(StoreError, match=r"store\.json: cannot create.*No space left") as e:
        Store(root)
    assert "full" in str(e.value)
    assert not (root / "store.json").exists() and [f for f in root.iterdir() if f.is_file()] == []
    monkeypatch.setattr(store_mod.os, "fsync", real)
    Store(root)
    assert json.loads((root / "store.json").read_text())["schema_version"] == 2


def test_an_empty_store_json_from_an_interrupted_init_is_repaired(tmp_path) -> None:
    (tmp_path / "store.json").write_bytes(b"")
    with pytest.raises(StoreError, match="not a workbench store description"):
        Store(tmp_path, create=False)
    Store(tmp_path)
    assert json.loads((tmp_path / "store.json").read_text())["schema_version"] == 2
    (tmp_path / "store.json").write_text("{")  # not empty: not ours to overwrite
    with pytest.raises(StoreError, match="not a workbench store description"):
        Store(tmp_path)


def test_parts_and_their_folder_are_fsynced_before_the_manifest_is_swapped(tmp_path, monkeypatch) -> None:
    s = Store(tmp_path / "store")
    k = s.key("candles", "test", "X/USDT", "5m")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a, b) -> None:
        events.append(("replace", str(b)))
        real_replace(a, b)

    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    monkeypatch.setattr(store_mod.os, "replace", replace)
    s.write(k, candles(20_000))
    d = s.series_dir(k)
    commit = events.index(("replace", str(d / "manifest.json")))
    before = events[:commit]
    for p in s.manifest(k)["parts"]:
        final = str(d / "parts" / p["file"])
        i = before.index(("replace", final))
        assert any(e[0] == "fsync" and ".tmp-" in e[1] and p["file"] in e[1] for e in before[:i]), p["file"]
    assert ("fsync", str(d / "parts")) in before
    assert events[commit + 1] == ("fsync", str(d))


# ------------------------------------------------------------------------------------------ item 10: full disk


FAULTS = [
    "first part",
    "second part",
    "part fsync",
    "parts folder fsync",
    "manifest write",
    "manifest rename",
]


@pytest.mark.parametrize("where", FAULTS)
def test_a_full_disk_at_any_step_names_the_series_leaves_no_orphans_and_a_retry_works(
    tmp_path, monkeypatch, where
) -> None:
    s, k, df = series(tmp_path, 10_000)
    d = s.series_dir(k)
    before_files, before_manifest = files_under(d), s.manifest(k)
    more = candles(20_000, seed=1)  # rewrites the 2 parts and adds a third: 3 part writes
    real_fsync, real_fsync_dir, real_replace = os.fsync, store_mod._fsync_dir, os.replace
    n = {"write": 0}

    class FullFile:
        """A new file on a disk that fills up: the first 100 bytes land, then ENOSPC."""

        def __init__(self, f) -> None:
            self.f = f

        def write(self, data) -> int:
            self.f.write(bytes(memoryview(data)[:100]))
            raise enospc(self.f.name)

        def __getattr__(self, name: str):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.f.close()

    def full_open(path, mode="r", *args, **kw):
        f = open(path, mode, *args, **kw)  # noqa: SIM115 - handed on
        if "x" not in mode:
            return f
        n["write"] += 1
        is_manifest = Path(path).name.startswith(".manifest.json")
        if (
            (where == "first part" and n["write"] == 1)
            or (where == "second part" and n["write"] == 2)
            or (where == "manifest write" and is_manifest)
        ):
            return FullFile(f)
        return f

    def fsync(fd: int) -> None:
        if (
            where == "part fsync"
            and ".parquet.tmp-" in os.readlink(f"/proc/self/fd/{fd}")
            and n["write"] == 2
        ):
            raise enospc()
        real_fsync(fd)

    def fsync_dir(path: Path) -> None:
        if where == "parts folder fsync" and path.name == "parts":
            raise enospc(path)
        real_fsync_dir(path)

    def replace(a, b) -> None:
        if where == "manifest rename" and Path(b).name == "manifest.json":
            raise enospc(b)
        real_replace(a, b)

    monkeypatch.setattr(store_mod, "open", full_open, raising=False)
    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    monkeypatch.setattr(store_mod, "_fsync_dir", fsync_dir)
    monkeypatch.setattr(store_mod.os, "replace", replace)
    with pytest.raises(StoreError) as e:
        s.write(k, more)
    msg = str(e.value)
    assert str(k) in msg and "No space left on device" in msg and "nothing was committed" in msg, msg
    assert files_under(d) == before_files  # no orphan parts, no temp files
    assert s.manifest(k) == before_manifest
    same_as(s, k, df)
    monkeypatch.undo()
    r = s.write(k, more)
    assert r.parts_written == 3
    same_as(s, k, more)


def test_a_failed_folder_sync_after_the_rename_keeps_the_commit(tmp_path, monkeypatch) -> None:
    s, k, _ = series(tmp_path, 10_000)
    d = s.series_dir(k)
    real = store_mod._fsync_dir
    monkeypatch.setattr(
        store_mod, "_fsync_dir", lambda p: (_ for _ in ()).throw(enospc(p)) if p == d else real(p)
    )
    more = candles(20_000, seed=1)
    with pytest.raises(StoreError, match=r"version 2 was committed, but sync .* failed"):
        s.write(k, more)
    monkeypatch.undo()
    same_as(s, k, more)  # the published parts were not deleted
    assert s.verify().ok


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 3 MiB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path, leave: int) -> None:
    """Fill the file system of ``path`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(path.parent).free
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_init_on_a_real_full_disk_fails_cleanly_and_works_after_space_is_freed(tiny_disk) -> None:
    _fill(tiny_disk / "filler", 0)
    root = tiny_disk / "data"
    with pytest.raises(StoreError, match=r"store\.json.*No space left on device"):
        Store(root)
    assert not (root / "store.json").exists()
    (tiny_disk / "filler").unlink()
    Store(root)
    assert json.loads((root / "store.json").read_text())["schema_version"] == 2


def test_a_write_on_a_real_full_disk_names_the_series_and_a_retry_after_freeing_space_works(
    tiny_disk,
) -> None:
    s = Store(tiny_disk / "data", gc_grace_s=3600)
    k = s.key("candles", "test", "X/USDT", "5m")
    df = candles(5_000)
    s.write(k, df)
    d = s.series_dir(k)
    before = files_under(d)
    more = candles(40_000, seed=1)  # about 1.3 MB of new parts
    _fill(tiny_disk / "filler", 400_000)
    with pytest.raises(StoreError) as e:
        s.write(k, more)
    assert str(k) in str(e.value) and "No space left on device" in str(e.value), str(e.value)
    assert files_under(d) == before
    same_as(s, k, df)
    (tiny_disk / "filler").unlink()
    assert s.write(k, more).rows_added == 35_000
    same_as(s, k, more)
    assert s.verify().ok


# ------------------------------------------------------------------------------------------ item 11: time units


@pytest.fixture
def ms_csv(tmp_path) -> tuple[Path, pd.DataFrame]:
    df = candles(500, start=T0, step=H).rename(columns={"ts": "timestamp"})
    path = tmp_path / "ms.csv"
    df.to_csv(path, index=False)
    return path, df


@pytest.mark.parametrize(("unit", "scale"), [("us", 1_000), ("ns", 1_000_000)])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_micro_and_nanosecond_timestamps_are_detected_and_stored_as_ms(
    tmp_path, ms_csv, unit, scale, fmt
) -> None:
    _, df = ms_csv
    path = tmp_path / f"{unit}.{fmt}"
    other = df.assign(timestamp=df["timestamp"] * scale)
    other.to_parquet(path) if fmt == "parquet" else other.to_csv(path, index=False)
    s = Store(tmp_path / "store")
    assert import_candles(s, path, "binance", "BTC/USDT", "1h").rows_added == 500
    got = s.read_table(s.key("candles", "binance", "BTC/USDT", "1h")).to_pandas()
    assert got["ts"].tolist() == df["timestamp"].tolist()
    ls = list_series(s)
    assert str(ls["first"].iloc[0]) == "2024-01-01 00:00:00+00:00"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda t: t.where(t.index != 7, t * 1000),
            r"row 8: column 'timestamp': \d+ is in epoch microseconds, but "
            r"row 1 \(\d+\) is in epoch milliseconds; a file must use one unit",
        ),
        (
            lambda t: t * 1000 + np.where(t.index == 3, 7, 0),
            r"row 4: column 'timestamp': \d+ \(epoch microseconds\) "
            "is not a whole millisecond",
        ),
        (
            lambda t: t.where(t.index != 2, 10**13),
            r"row 3: column 'timestamp': 10000000000000 is not a time in "
            "1990-01-01..2100-01-01",
        ),
        (lambda t: t.where(t.index != 2, -5), r"row 3: .*-5 is not a time"),
        (
            lambda t: t.astype(str).where(t.index != 1, "1980-01-01T00:00:00Z"),
            r"row 2: .*1980-01-01 00:00:00 is "
            "outside 1990-01-01..2100-01-01",
        ),
        (lambda t: t.astype(str).where(t.index != 1, "9" * 25), r"row 2: column 'timestamp': not epoch"),
    ],
)
def test_timestamps_in_a_mixed_or_impossible_unit_are_refused_with_the_row(
    tmp_path, ms_csv, mutate, message
) -> None:
    _, df = ms_csv
    path = tmp_path / "bad.csv"
    df.assign(timestamp=mutate(df["timestamp"])).to_csv(path, index=False)
    s = Store(tmp_path / "store")
    with pytest.raises(FileFormatError, match=message) as e:
        import_candles(s, path, "binance", "BTC/USDT", "1h")
    assert str(path) in str(e.value)
    assert s.series() == []


@pytest.mark.parametrize(("scale", "unit"), [(1_000, "microseconds"), (1_000_000, "nanoseconds")])
def test_the_store_refuses_timestamps_that_are_not_milliseconds(tmp_path, scale, unit) -> None:
    s = Store(tmp_path)
    df = candles(10, step=H)
    for kind, data in (
        ("candles", df.assign(ts=df["ts"] * scale)),
        ("funding", pd.DataFrame({"ts": [T0 * scale], "rate": [0.0001], "mark_price": [100.0]})),
    ):
        key = s.key(kind, "test", "X/USDT", "1h" if kind == "candles" else None)
        with pytest.raises(
            StoreError, match=rf"row 1: ts \d+ is not a time in .* \(it looks like epoch {unit}\)"
        ):
            s.write(key, data, source="feed")
    assert s.series() == []


def test_a_series_stored_in_nanoseconds_by_an_older_version_is_named_and_can_be_dropped(tmp_path) -> None:
    s, k, _ = series(tmp_path, 1_000)
    good = s.key("candles", "test", "Y/USDT", "5m")
    s.write(good, candles(100))
    # what an older workbench wrote for nanosecond input taken as ms: a schema-1 part with ts * 1e6
    d = s.series_dir(k)
    m = json.loads((d / "manifest.json").read_text())
    part = m["parts"][0]
    t = pq.read_table(d / "parts" / part["file"])
    t = t.set_column(0, "ts", pa.array(t.column("ts").to_numpy() * 1_000_000))
    pq.write_table(t, d / "parts" / "1970-01.00000009.parquet")
    m["schema_version"] = 1
    m["parts"] = [
        {
            "period": "1970-01",
            "file": "1970-01.00000009.parquet",
            "rows": t.num_rows,
            "min_ts": int(part["min_ts"]) * 1_000_000,
            "max_ts": int(part["max_ts"]) * 1_000_000,
        }
    ]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(
        StoreCorruptError, match=rf"{d / 'manifest.json'}: {k} holds times .* not epoch milliseconds"
    ):
        list_series(s)
    rep = s.verify(drop_damaged=True)
    assert rep.dropped == 1 and "not epoch milliseconds" in rep.problems[0]["problem"]
    assert list_series(s)["symbol"].tolist() == ["Y/USDT"]


# ------------------------------------------------------------------------------------------ item 12: huge fields


@pytest.mark.parametrize("column", ["close", "timestamp"])
def test_a_huge_bad_field_is_quoted_cut(tmp_path, ms_csv, column) -> None:
    _, df = ms_csv
    path = tmp_path / "huge.csv"
    big = "x" * 5_000_000
    df.astype(str).assign(**{column: df[column].astype(str).where(df.index != 4, big)}).to_csv(
        path, index=False
    )
    with pytest.raises(FileFormatError) as e:
        import_candles(Store(tmp_path / "store"), path, "binance", "BTC/USDT", "1h")
    msg = str(e.value)
    assert len(msg) < len(str(path)) + 300, len(msg)
    assert "row 5" in msg and "5,000,000 characters" in msg and column in msg


def test_a_huge_header_is_quoted_cut(tmp_path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("timestamp," + "y" * 1_000_000 + ",open\n1,2,3\n")
    with pytest.raises(FileFormatError, match="missing column") as e:
        import_candles(Store(tmp_path / "store"), path, "binance", "BTC/USDT", "1h")
    assert len(str(e.value)) < 600
