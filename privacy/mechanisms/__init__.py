"""The mechanisms: what is clipped, what noise is added by whom, and who takes part in a round."""
