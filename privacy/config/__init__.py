"""The experiment config: its sections as frozen dataclasses, the schema every value passes, the errors that name a bad key. At the bottom: the driver and every worker read it."""
