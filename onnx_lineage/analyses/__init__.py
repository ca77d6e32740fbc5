"""Analyses: interpolation sweep, determination, boundary search, directions, sampling, closeness."""
