"""The simulator is beside the product: importing the product (the code location, the CLI, even
the `simulate` command's module) does not load it; only running `simulate` does.

`make lint` checks the static imports ([tool.importlinter] in pyproject.toml); this checks the
one import it allows is lazy.
"""

import subprocess
import sys

PROBE = """
import sys
import pipelines.cli, pipelines.cli.simulate, pipelines.lib.files, pipelines.lib.cdc.land
{extra}
loaded = sorted(m for m in sys.modules if m == "returnsync_sim" or m.startswith("returnsync_sim."))
print(",".join(loaded))
"""


def _loaded(extra: str = "") -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(extra=extra)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_the_product_does_not_load_the_simulator(dbt_manifest):
    assert _loaded("import pipelines.definitions") == ""


def test_running_simulate_loads_it(tmp_path):
    # the probe can tell: calling the command's function does import the package
    extra = (
        "from click.testing import CliRunner\n"
        f"r = CliRunner().invoke(pipelines.cli.simulate.simulate, ['--returns', '3', '--seed', "
        f"'1', '--out', {str(tmp_path / 'out')!r}, '--as-of', '2026-11-01T00:00:00Z'])\n"
        "assert r.exit_code == 0, r.output"
    )
    assert "returnsync_sim" in _loaded(extra).split(",")
