"""`make bench`: every benchmark, side by side in one run (JSON in results/, tables printed)."""

from . import (boards, fault_rate, llm, lut_cycles, lut_resources, sfu, sim_throughput,
               utilization)

if __name__ == "__main__":
    utilization.run()
    sim_throughput.run()
    lut_cycles.run()
    lut_resources.run()
    sfu.run()
    llm.run()
    fault_rate.run()
    boards.run()
