"""FPGA board targets, bitstream flows and the host link (not built yet; see the boards
issue). The accelerator already exposes what a board top needs: a request/response memory
bus, start/done/error status and a counter read port."""
