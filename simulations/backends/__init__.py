"""Where the real apps run in simulation: the in-process Grid, Flower's Ray engine, message tracing and replay."""
