"""returnsync's event log storage (pipelines.eventlog): what it stores is what Dagster's own
SQLite event log stores, readable by Dagster's own class (the webserver of a user's instance),
a batch is all or nothing, an idle writer holds no lock, and a reader is never blocked while a
run writes (issue 24: Dagster's bookkeeping of an increment)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import dagster as dg
import pytest

from pipelines.eventlog import ReturnsyncEventLogStorage
from pipelines.runner import DAGSTER_YAML, dagster_yaml, instance, uses_default_event_log

ROOT = Path(__file__).resolve().parents[2]
CHECKS_FAILING = {"no_negative"}


def shaped_job():
    """A small job as main_job is shaped: a multi-asset with checks (one failing) and a
    downstream asset with its own check."""
    specs = [dg.AssetSpec(["marts", name]) for name in ("returns", "credits", "refunds")]
    checks = [
        dg.AssetCheckSpec(name, asset=spec.key)
        for spec in specs
        for name in ("not_null", "no_negative")
    ]

    @dg.multi_asset(specs=specs, check_specs=checks, name="models")
    def models():
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"rows": len(spec.key.path)})
        for check in checks:
            yield dg.AssetCheckResult(
                asset_key=check.asset_key,
                check_name=check.name,
                passed=check.name not in CHECKS_FAILING,
                metadata={"failures": int(check.name in CHECKS_FAILING)},
            )

    @dg.asset(
        key=["recon", "mismatches"],
        deps=[specs[0].key],
        check_specs=[dg.AssetCheckSpec("unique", asset=["recon", "mismatches"])],
    )
    def mismatches():
        yield dg.MaterializeResult(metadata={"open": 2})
        yield dg.AssetCheckResult(check_name="unique", passed=True)

    defs = dg.Definitions(assets=[models, mismatches])
    return defs.resolve_implicit_global_asset_job_def()


def home_with(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(text)
    return path


def what_readers_see(inst: dg.DagsterInstance, run_id: str) -> dict:
    """Everything the UI shows of a run, as plain values (no storage ids, no times)."""
    records = inst.get_records_for_run(run_id, limit=10_000).records
    events = [r.event_log_entry for r in records]
    keys = sorted(inst.get_asset_keys(), key=lambda k: k.to_string())
    latest = {
        key.to_string(): (
            record.asset_entry.last_materialization_record.event_log_entry.run_id
            if record.asset_entry.last_materialization_record
            else None
        )
        for record in inst.get_asset_records(keys)
        for key in [record.asset_entry.asset_key]
    }
    check_keys = [
        dg.AssetCheckKey(dg.AssetKey(path), name)
        for path in (["marts", "returns"], ["marts", "credits"], ["marts", "refunds"])
        for name in ("not_null", "no_negative")
    ] + [dg.AssetCheckKey(dg.AssetKey(["recon", "mismatches"]), "unique")]
    checks = {}
    for key in check_keys:
        (execution,) = inst.event_log_storage.get_asset_check_execution_history(key, limit=1)
        checks[key.to_user_string()] = (execution.run_id, execution.status.value)
    steps = {s.step_key: s.status.value for s in inst.get_run_step_stats(run_id)}
    return {
        "types": sorted(e.dagster_event_type.value for e in events if e.is_dagster_event),
        "latest": latest,
        "checks": checks,
        "steps": steps,
        "run": inst.get_run_by_id(run_id).status.value,
        "materializations": {
            key.to_string(): len(inst.fetch_materializations(key, limit=100).records)
            for key in keys
        },
    }


def test_a_run_stored_by_returnsync_reads_as_one_stored_by_dagster(tmp_path, monkeypatch):
    """The same job on two instances, one with Dagster's default storage and one with ours
    (with DAGSTER_EVENT_BATCH_SIZE set, so the planned events go through store_event_batch and
    the others through store_event); the readers see the same runs. Then
    Dagster's own class opens our instance's files (a user's webserver with a dagster.yaml of
    its own) and sees them too."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    job = shaped_job()
    ours_home = tmp_path / "ours"
    ours_home.mkdir()
    home_with(ours_home, dagster_yaml(ours_home))
    theirs_home = home_with(tmp_path / "theirs", DAGSTER_YAML)
    seen = {}
    for name, home in (("ours", ours_home), ("theirs", theirs_home)):
        with dg.DagsterInstance.from_config(str(home)) as inst:
            assert isinstance(inst.event_log_storage, ReturnsyncEventLogStorage) == (name == "ours")
            first = job.execute_in_process(instance=inst, raise_on_error=False)
            second = job.execute_in_process(instance=inst, raise_on_error=False)
            assert first.success and second.success
            seen[name] = what_readers_see(inst, second.run_id)
            run_ids = (first.run_id, second.run_id)
            if name == "ours":
                ours_runs = run_ids
            seen[name]["latest"] = {k: run_ids.index(v) for k, v in seen[name]["latest"].items()}
            seen[name]["checks"] = {
                k: (run_ids.index(r), s) for k, (r, s) in seen[name]["checks"].items()
            }
    assert seen["ours"] == seen["theirs"]
    ours = seen["ours"]
    assert ours["types"].count("ASSET_MATERIALIZATION") == 4
    assert ours["types"].count("ASSET_CHECK_EVALUATION") == 7
    assert ours["types"].count("ASSET_MATERIALIZATION_PLANNED") == 4
    assert ours["types"].count("ASSET_CHECK_EVALUATION_PLANNED") == 7
    assert set(ours["latest"].values()) == {1} and len(ours["latest"]) == 4
    assert ours["checks"]["marts/returns:no_negative"] == (1, "FAILED")
    assert ours["checks"]["recon/mismatches:unique"] == (1, "SUCCEEDED")
    assert set(ours["materializations"].values()) == {2}

    # Dagster's own class on our files: a dagster.yaml without returnsync's storage
    (ours_home / "dagster.yaml").write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(ours_home)) as plain:
        assert uses_default_event_log(plain)
        again = what_readers_see(plain, ours_runs[1])
        again["latest"] = {k: ours_runs.index(v) for k, v in again["latest"].items()}
        again["checks"] = {k: (ours_runs.index(r), s) for k, (r, s) in again["checks"].items()}
        assert again == ours


def test_a_batch_is_all_or_nothing(tmp_path):
    """A batch that fails part-way (here the index refuses its second event: a trigger) leaves
    nothing behind in any database, so Dagster's fallback (the events one by one) stores each
    exactly once."""
    job = shaped_job()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml(home))
    with dg.DagsterInstance.from_config(str(home)) as inst:
        run = job.execute_in_process(instance=inst).run_id
        storage = inst.event_log_storage
        events = [r.event_log_entry for r in storage.get_records_for_run(run).records]
        materialization = next(
            e for e in events if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        moved = materialization._replace(run_id="another-run")
        poisoned = materialization._replace(run_id="poisoned-run")
        index = sqlite3.connect(home / "history" / "runs" / "index.db")
        with index:
            index.execute(
                "create trigger refuse before insert on event_logs "
                "when new.run_id = 'poisoned-run' begin select raise(abort, 'refused'); end"
            )
        with pytest.raises(Exception, match="refused"):
            storage.store_event_batch([moved, poisoned])
        assert storage.get_records_for_run("another-run").records == []
        assert storage.get_records_for_run("poisoned-run").records == []
        key = materialization.dagster_event.asset_key
        runs = [r.run_id for r in inst.fetch_materializations(key, limit=10).records]
        assert runs == [run]
        with index:
            index.execute("drop trigger refuse")
        index.close()
        storage.store_event_batch([moved, poisoned])
        runs = [r.run_id for r in inst.fetch_materializations(key, limit=10).records]
        assert runs == ["poisoned-run", "another-run", run]
        assert len(storage.get_records_for_run("another-run").records) == 1


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg

    def wait(flag):
        while not Path(flag).exists():
            time.sleep(0.05)

    @dg.asset(check_specs=[dg.AssetCheckSpec("ok", asset="slow")])
    def slow():
        yield dg.MaterializeResult(metadata={"half": 1})
        print("half", flush=True)
        wait(sys.argv[2])
        yield dg.AssetCheckResult(check_name="ok", passed=True)
        print("checked", flush=True)
        wait(sys.argv[3])

    job = dg.Definitions(assets=[slow]).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.from_config(sys.argv[1]) as inst:
        assert type(inst.event_log_storage).__name__ == "ReturnsyncEventLogStorage"
        print(job.execute_in_process(instance=inst).run_id, flush=True)
    """
)


def no_lock_held(db: Path) -> None:
    """Read, then take and release the write lock, never waiting (timeout 0): raises
    `database is locked` if any connection holds a lock on the database."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        con.execute("select count(*) from event_logs").fetchone()
        con.execute("begin immediate")
        con.execute("rollback")
    finally:
        con.close()


WATCH_WAIT_S = 60  # generous: the watcher's thread on a loaded machine


def test_readers_and_writers_are_not_blocked_while_a_run_writes(tmp_path):
    """A run in another process stores events through our storage and stops half-way (its
    connections open, idle): the instance's databases take another writer at once (no lock is
    held between events), and Dagster's own storage reads the half-done run, runs a job of its
    own on the same instance, and its live watch of the run (the UI's run log) gets the events
    the run stores while it is still running; then the first run finishes."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml(home))
    flags = tmp_path / "go", tmp_path / "end"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), *map(str, flags)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "half"
        runs_dir = home / "history" / "runs"
        (shard,) = [p for p in runs_dir.glob("*.db") if p.name != "index.db"]
        no_lock_held(runs_dir / "index.db")
        no_lock_held(shard)
        (home / "dagster.yaml").write_text(DAGSTER_YAML)  # a reader with Dagster's own class
        with dg.DagsterInstance.from_config(str(home)) as reader:
            assert uses_default_event_log(reader)
            (run,) = reader.get_runs()
            assert run.status == dg.DagsterRunStatus.STARTED
            types = [
                r.event_log_entry.dagster_event_type
                for r in reader.get_records_for_run(run.run_id).records
                if r.event_log_entry.is_dagster_event
            ]
            assert dg.DagsterEventType.ASSET_MATERIALIZATION in types
            assert dg.DagsterEventType.ASSET_CHECK_EVALUATION not in types
            assert shaped_job().execute_in_process(instance=reader).success

            seen: list = []
            checked = threading.Event()

            def follow(event, _cursor) -> None:
                seen.append(event.dagster_event_type)
                if event.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                    checked.set()

            reader.watch_event_logs(run.run_id, None, follow)
            flags[0].touch()
            assert writer.stdout.readline().strip() == "checked"
            # the writer waits now, its connections open: the watch must see the check anyway
            assert checked.wait(WATCH_WAIT_S), seen
            reader.end_watch_event_logs(run.run_id, follow)
        flags[1].touch()
        run_id = writer.stdout.readline().strip()
        assert writer.wait(timeout=120) == 0
    finally:
        for flag in flags:
            flag.touch()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    with dg.DagsterInstance.from_config(str(home)) as after:
        assert after.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        (execution,) = after.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("slow"), "ok"), limit=1
        )
        assert execution.run_id == run_id and execution.status.value == "SUCCEEDED"


def test_an_existing_dagster_yaml_is_used_as_it_is(tmp_path, monkeypatch):
    """An instance made by an older returnsync (Dagster's default event log) keeps its file and
    its runs; one made now uses returnsync's storage, on the same files."""
    home = tmp_path / "old"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    home_with(home, DAGSTER_YAML)
    job = shaped_job()
    with instance() as old:
        assert uses_default_event_log(old)
        first = job.execute_in_process(instance=old).run_id
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML  # never rewritten

    new = tmp_path / "new"
    monkeypatch.setenv("DAGSTER_HOME", str(new))
    with instance() as inst:
        assert not uses_default_event_log(inst)
        assert isinstance(inst.event_log_storage, ReturnsyncEventLogStorage)
    # a user who adds returnsync's storage to the old instance keeps its history
    (home / "dagster.yaml").write_text(dagster_yaml(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with instance() as upgraded:
        assert not uses_default_event_log(upgraded)
        second = job.execute_in_process(instance=upgraded).run_id
        assert [r.run_id for r in upgraded.get_runs()] == [second, first]
        key = dg.AssetKey(["recon", "mismatches"])
        assert [r.run_id for r in upgraded.fetch_materializations(key, limit=5).records] == [
            second,
            first,
        ]
