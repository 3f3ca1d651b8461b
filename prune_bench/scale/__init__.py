"""From one run to a paper and a cluster: grids, plans, launchers, status, the device pool."""
