"""The benchmark harness, shared by every script in bench/ (each script measures one claim).

- ``results``: machine facts, a plain-text table, the JSON result file under bench/results/;
- ``timing``: medians and percentiles, interleaved rounds, rates and per-round ratios;
- ``load``: the load on a shared machine (load averages, CPU shares, waiting for quiet);
- ``corpora``: the BEIR collections under DATA, read and sliced;
- ``vectors``: vector sets shared by the ANN and scan benchmarks, exact top-k and recall;
- ``workspaces``: workspaces prepared from a collection, and cached ones;
- ``servers``: a subprocess server on a free loopback port, started and always stopped;
- ``wrk``: HTTP load with wrk, its output read;
- ``children``: a measurement in a process of its own, its JSON result read back;
- ``trees``: another commit's checkout, first on a child's ``PYTHONPATH``.

The names most scripts need are re-exported here.
"""

from _common.corpora import DATA
from _common.results import RESULTS, machine, met, table, write_result
from _common.timing import median

__all__ = ["DATA", "RESULTS", "machine", "median", "met", "table", "write_result"]
