"""The ERP side of a simulated landscape written into a real Tryton (DESIGN §13, `--erp tryton`)."""

from returnsync_sim.tryton.landscape import load_landscape
from returnsync_sim.tryton.loader import LoadResult, TrytonLoader, load
from returnsync_sim.tryton.state import read_erp_state

__all__ = ["LoadResult", "TrytonLoader", "load", "load_landscape", "read_erp_state"]
