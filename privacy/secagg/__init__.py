"""Secure aggregation: the masking protocol over Z_2^b and the quantisation of real vectors into it."""
