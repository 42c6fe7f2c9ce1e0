"""The `fedseg` command line: generate, simulate, sweep, assign, ledger, deployment."""
