"""What a model trains on: a data set (:mod:`actors.data`), then ``data.features`` (:mod:`actors.features`)."""

from __future__ import annotations

from functools import lru_cache

from actors.data import ImageData, load_dataset
from actors.features import apply_features


def load_from_config(data_cfg, *, cache: bool = True) -> ImageData:
    """The data a model trains on for a :class:`privacy.config.DataConfig`: :func:`load_dataset`, then
    ``data.features`` (actors/features.py). ``cache=False`` loads afresh and keeps nothing: for actors that
    take the tensors they need once and drop the rest."""
    args = (data_cfg.dataset, data_cfg.root, data_cfg.test_fraction, data_cfg.split_seed, data_cfg.download)
    if data_cfg.features == "pixels":
        return load_dataset(*args) if cache else load_dataset.__wrapped__(*args)
    load = _load_features if cache else _load_features.__wrapped__
    return load(*args, data_cfg.features)


@lru_cache(maxsize=2)
def _load_features(dataset: str, root: str, test_fraction: float, seed: int, download: bool,
                   features: str) -> ImageData:
    return apply_features(load_dataset.__wrapped__(dataset, root, test_fraction, seed, download), features)
