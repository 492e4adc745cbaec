"""Accountants and ledgers: epsilon of a history of privacy events (Gaussian, subsampled, Skellam through its dominating Gaussian), calibration from a target, a sweep as one release."""
