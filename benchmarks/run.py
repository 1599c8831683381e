"""`make bench`: every benchmark, side by side in one run (JSON in results/, tables printed)."""

from . import sim_throughput, utilization

if __name__ == "__main__":
    utilization.run()
    sim_throughput.run()
