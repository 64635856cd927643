"""The search methods: how the alphas move (DARTS, first and second order: darts.py)."""
