"""Student versus teacher: quality, latency, throughput, cost and the ROI verdict."""
