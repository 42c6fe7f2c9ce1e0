"""fedseg.simulations."""
