"""The benchmarks' landscape cache is never written through: runs see hard-linked copies, and a
cache altered after it was simulated is refused instead of being measured."""

from __future__ import annotations

import json

import pytest

from bench._common import check_unaltered, file_sizes, link_copy


def _cache(tmp_path):
    cache = tmp_path / "landscape"
    (cache / "cdc").mkdir(parents=True)
    (cache / "cdc" / "erp.public.sale_line.ndjson").write_text('{"a": 1}\n{"a": 2}\n')
    (cache / ".complete").write_text(json.dumps({"files": file_sizes(cache)}))
    return cache


def test_a_copy_through_a_symlink_is_hard_links_not_the_symlink(tmp_path):
    cache = _cache(tmp_path)
    (tmp_path / "clone").mkdir()
    linked = tmp_path / "clone" / "landscape"
    linked.symlink_to(cache)

    run = link_copy(linked, tmp_path / "run" / "landing")
    assert not run.is_symlink()
    topic = run / "cdc" / "erp.public.sale_line.ndjson"
    assert topic.stat().st_ino == (cache / "cdc" / topic.name).stat().st_ino

    # what the incremental benchmark does to a run's copy: replace a file, add a late one
    shorter = topic.with_suffix(".tmp")
    shorter.write_text('{"a": 1}\n')
    shorter.replace(topic)
    (run / "cdc" / "erp.public.sale_line-late.ndjson").write_text('{"a": 2}\n')
    check_unaltered(cache)  # the cache still holds what was simulated


def test_an_altered_cache_is_refused(tmp_path):
    cache = _cache(tmp_path)
    (cache / "cdc" / "erp.public.sale_line-late.ndjson").write_text('{"a": 2}\n')
    with pytest.raises(SystemExit, match="altered after it was simulated"):
        check_unaltered(cache)
