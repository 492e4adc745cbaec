"""Empirical checks of the claimed epsilons: the one-run canary audit and membership inference."""
