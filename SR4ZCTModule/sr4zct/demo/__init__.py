"""Built-in demo and evaluation: the synthetic phantom, the scoring protocol, the naive reference operators."""
