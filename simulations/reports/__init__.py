"""Pictures and pages of results: trade-off, profile and convergence plots, the sweep's HTML report."""
