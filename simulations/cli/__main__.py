"""`python -m fedseg.simulations.cli`: the same as the `fedseg` command."""

from fedseg.simulations.cli.main import main

main()
