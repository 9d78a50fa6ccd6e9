"""Which evaluation episodes are scored: the releases' sequence, or ours per seed.

An episode is a query image of a fold's evaluation list, a class and K support images.
Both protocols share the rules of the releases (FSSAM's and HMNet's ``util/dataset.py``):

- the class is drawn uniformly among the fold's classes *present* in the query label,
  whatever their size (ascending class ids); the 2·32·32-pixel rule only decides which
  images enter the list and which may be supports (a present class eligible in fewer than
  K other images cannot be drawn: the release never finishes such an episode, so ours
  leaves those classes out and the release's sequence stops with an error naming them);
- the K supports are distinct images in which the class is *eligible*, never the query.

They differ in which query comes when and which random numbers draw the rest:

- ``release``: the sequence of the releases' ``test.py`` (and of their validation during
  training). Their loader walks the list in its order, pass after pass, until the episode
  count is reached. Each pass is a new DataLoader iterator, which first takes a base seed
  from torch's global generator (seeded with ``seed`` before the first pass) and hands item
  k of the pass to worker ``k mod W``, whose Python ``random`` was seeded with ``base seed
  + worker id``; with W = 0 the items use the main process's ``random``, seeded with
  ``seed`` once. Per item: ``randint(1, n) - 1`` picks the class among the n present ones;
  per shot, one ``randint(1, P) - 1`` among the P images of the class whose value goes
  unused, then draws until the image is neither the query nor an earlier support. The model
  receives the supports in the reverse order of their drawing (the release stacks each new
  support in front of the others). The sequence depends on W, which is why the worker
  count of the release's config is part of the protocol.
- ``seeds``: ours. Episode i is a pure function of (seed, i), whatever the number of
  workers or processes: the query is ``order[i mod n]``, ``order`` a permutation drawn from
  ``seed``; class and supports come from a generator seeded with ``(seed, i)``. Several
  seeds give a mean and a standard deviation.

Both are computed up front (``episode_sequence``) and handed to the loaders, so our own
evaluation never depends on its workers or processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fssam.data.sources import ImageRecord, class_index

log = logging.getLogger(__name__)

RELEASE = "release"
SEEDS = "seeds"
PROTOCOLS = (RELEASE, SEEDS)
HSNET_IMAGES = 10  # HSNet draws FSS-1000 supports among <n>.jpg, n = 1..10


@dataclass(frozen=True)
class Episode:
    """Indices into the evaluation list: the query, the class id, the supports in the order
    the model receives them."""

    query: int
    class_id: int
    supports: tuple[int, ...]


def usable_classes(records: Sequence[ImageRecord], pools: Mapping[int, Sequence[int]],
                   shot: int) -> list[tuple[int, ...]]:
    """Per record, its present classes with at least ``shot`` eligible images besides it.

    A ValueError names the first record with none (its list cannot give it an episode);
    present classes left out elsewhere are logged once.
    """
    sets = {c: set(pool) for c, pool in pools.items()}
    usable: list[tuple[int, ...]] = []
    dropped: set[int] = set()
    for index, record in enumerate(records):
        ok = tuple(c for c in record.present
                   if len(sets.get(c, ())) - (index in sets.get(c, ())) >= shot)
        if not ok:
            others = {c: len(sets.get(c, ())) - (index in sets.get(c, ()))
                      for c in record.present}
            raise ValueError(
                f"no episode for {record.label}: its classes are eligible in too few other "
                f"images of the list for shot={shot} supports (class: other images {others})")
        dropped.update(set(record.present) - set(ok))
        usable.append(ok)
    if dropped:
        log.warning("classes %s are present in some images but have too few other eligible "
                    "images for %d supports: those images never take them as episode class",
                    sorted(dropped), shot)
    return usable


def draw_episode(records: Sequence[ImageRecord], pools: Mapping[int, Sequence[int]],
                 usable: Sequence[tuple[int, ...]], shot: int, query: int,
                 rng: np.random.Generator) -> Episode:
    """Our rule for one query: class uniform among its ``usable`` classes (see
    ``usable_classes``), ``shot`` distinct supports uniform among the class's eligible
    images other than the query."""
    class_id = int(rng.choice(usable[query]))
    pool = [j for j in pools[class_id] if j != query]
    picked = rng.choice(len(pool), size=shot, replace=False)
    return Episode(query, class_id, tuple(pool[int(k)] for k in picked))


def seeded_episodes(records: Sequence[ImageRecord], *, shot: int, num_episodes: int,
                    seed: int) -> list[Episode]:
    """Our protocol: episode i drawn with ``np.random.default_rng((seed, i))``."""
    pools = class_index(records)
    usable = usable_classes(records, pools, shot)
    order = np.random.default_rng(seed).permutation(len(records))
    return [draw_episode(records, pools, usable, shot, int(order[i % len(records)]),
                         np.random.default_rng([seed, i]))
            for i in range(num_episodes)]


def _release_draw(records: Sequence[ImageRecord], pools: Mapping[int, Sequence[int]],
                  shot: int, query: int, rnd: random.Random) -> Episode:
    present = records[query].present
    class_id = present[rnd.randint(1, len(present)) - 1]
    pool = pools.get(class_id, [])
    if len(pool) - (query in pool) < shot:
        raise ValueError(
            f"the release's sequence draws class {class_id} for {records[query].label}, which "
            f"is eligible in only {len(pool) - (query in pool)} other image(s), fewer than "
            f"shot={shot}: the release itself would never finish this episode")
    drawn: list[int] = []
    for _ in range(shot):
        rnd.randint(1, len(pool))  # the release's first draw of each support is never used
        while True:
            k = rnd.randint(1, len(pool)) - 1
            if pool[k] != query and k not in drawn:
                break
        drawn.append(k)
    return Episode(query, class_id, tuple(pool[k] for k in reversed(drawn)))


def release_base_seeds(seed: int, count: int) -> list[int]:
    """The base seeds of the first ``count`` DataLoader iterators after ``torch.manual_seed
    (seed)``: one int64 draw of torch's generator per iterator."""
    generator = torch.Generator().manual_seed(seed)
    return [int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
            for _ in range(count)]


def release_episodes(records: Sequence[ImageRecord], *, shot: int, num_episodes: int,
                     seed: int, workers: int) -> list[Episode]:
    """The releases' evaluation sequence for a loader of ``workers`` processes (0: the
    main process) and batch size 1."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if len(records) < 2:
        raise ValueError("the release's loop needs at least 2 evaluation images")
    pools = class_index(records)
    passes = -(-num_episodes // len(records))
    main = random.Random(seed)
    episodes: list[Episode] = []
    for base in release_base_seeds(seed, passes):
        streams = [random.Random(base + w) for w in range(workers)] or [main]
        for k in range(min(len(records), num_episodes - len(episodes))):
            episodes.append(_release_draw(records, pools, shot, k, streams[k % len(streams)]))
    return episodes


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def hsnet_episodes(records: Sequence[ImageRecord], *, shot: int, num_episodes: int,
                   seed: int, workers: int = 0) -> list[Episode]:
    """HSNet's FSS-1000 test sequence (its ``data/fss.py``, as Matcher and PATNet test):
    the list walked in its order (episode i: query ``i mod n``); per shot, single draws
    ``choice(range(1, 11), 1, replace=False)`` of NumPy's legacy generator, seeded with
    ``seed`` once, name the support image ``<n>.jpg`` of the query's class; a draw equal
    to the query is drawn again, a repeated support is kept (as HSNet keeps it).
    ``workers`` is unused: HSNet tests in the main process."""
    del workers
    by_name = {(c, _stem(r.image)): i for i, r in enumerate(records) for c in r.classes}
    draws = np.random.RandomState(seed)
    episodes = []
    for i in range(num_episodes):
        query = i % len(records)
        class_id, name = records[query].classes[0], _stem(records[query].image)
        supports: list[int] = []
        while len(supports) < shot:
            pick = str(int(draws.choice(range(1, HSNET_IMAGES + 1), 1, replace=False)[0]))
            if pick == name:
                continue
            if (class_id, pick) not in by_name:
                folder = os.path.dirname(records[query].image)
                raise ValueError(f"HSNet's rule draws support {pick}.jpg of {folder}, which is "
                                 f"not in the list: every class folder must hold 1.jpg.."
                                 f"{HSNET_IMAGES}.jpg")
            supports.append(by_name[class_id, pick])
        episodes.append(Episode(query, class_id, tuple(supports)))
    return episodes


def patnet_episodes(records: Sequence[ImageRecord], *, shot: int, num_episodes: int,
                    seed: int, workers: int = 0) -> list[Episode]:
    """PATNet's cross-domain test sequence (its Deepglobe, ISIC and Chest X-ray datasets):
    episode i takes the class ``i mod C`` (ascending ids), then the query and, per shot,
    a support, each one draw ``choice(n, 1, replace=False)`` of NumPy's legacy generator
    (seeded with ``seed`` once) among the class's images in list order; a support equal to
    the query is drawn again, a repeated support is kept. ``workers`` is unused."""
    del workers
    pools = class_index(records)
    return cycling_episodes(records, pools, sorted(pools), shot=shot,
                            num_episodes=num_episodes, seed=seed, who="PATNet")


def matcher_episodes(records: Sequence[ImageRecord], *, shot: int, num_episodes: int,
                     seed: int, workers: int = 0) -> list[Episode]:
    """Matcher's LVIS-92i test sequence (its ``data/lvis.py``, as SANSA tests): PATNet's
    draws, with the classes in the order of the list (the fold's order), not ascending.
    ``workers`` is unused: Matcher tests in the main process."""
    del workers
    pools = class_index(records)
    listed = list(dict.fromkeys(c for r in records for c in r.classes))
    return cycling_episodes(records, pools, listed, shot=shot, num_episodes=num_episodes,
                            seed=seed, who="Matcher")


def cycling_episodes(records: Sequence[ImageRecord], pools: Mapping[int, Sequence[int]],
                     classes: Sequence[int], *, shot: int, num_episodes: int, seed: int,
                     who: str) -> list[Episode]:
    """Episode i: class ``classes[i mod C]``; its query and each support one legacy NumPy
    draw ``choice(n, 1, replace=False)`` among the class's n images (the generator seeded
    with ``seed`` once); a support equal to the query is drawn again, repeats are kept."""
    small = {c: len(pools[c]) for c in classes if len(pools[c]) < 2}
    if small:
        raise ValueError(f"{who}'s rule needs at least 2 images per class, got {small}")
    draws = np.random.RandomState(seed)
    episodes = []
    for i in range(num_episodes):
        class_id = classes[i % len(classes)]
        pool = pools[class_id]
        query = pool[int(draws.choice(len(pool), 1, replace=False)[0])]
        supports: list[int] = []
        while len(supports) < shot:
            pick = pool[int(draws.choice(len(pool), 1, replace=False)[0])]
            if pick != query:
                supports.append(pick)
        episodes.append(Episode(query, class_id, tuple(supports)))
    return episodes


# the reference episode rule of a benchmark (``Benchmark.release_rule``)
RELEASE_RULES = {"fssam": release_episodes, "hsnet": hsnet_episodes,
                 "patnet": patnet_episodes, "matcher": matcher_episodes}
RULE_NAMES = {"fssam": "the releases'", "hsnet": "HSNet's", "patnet": "PATNet's",
              "matcher": "Matcher's"}


def episode_sequence(protocol: str, records: Sequence[ImageRecord], *, shot: int,
                     num_episodes: int, seed: int, workers: int = 0,
                     release_rule: str = "fssam") -> list[Episode]:
    """The ``protocol``'s episodes (``workers``: the release's loader workers;
    ``release_rule``: whose reference sequence "release" is, ``RELEASE_RULES``)."""
    if protocol == RELEASE:
        if release_rule not in RELEASE_RULES:
            raise ValueError(f"unknown release rule {release_rule!r} "
                             f"(expected one of {', '.join(RELEASE_RULES)})")
        return RELEASE_RULES[release_rule](records, shot=shot, num_episodes=num_episodes,
                                           seed=seed, workers=workers)
    if protocol == SEEDS:
        return seeded_episodes(records, shot=shot, num_episodes=num_episodes, seed=seed)
    raise ValueError(f"unknown protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")


def sequence_fingerprint(records: Sequence[ImageRecord], episodes: Sequence[Episode]) -> str:
    """SHA-256 (hex, 16 characters) of the episodes' image paths and classes."""
    digest = hashlib.sha256()
    for e in episodes:
        names = [records[e.query].image, *(records[j].image for j in e.supports)]
        digest.update(f"{e.class_id}|{'|'.join(names)}\n".encode())
    return digest.hexdigest()[:16]
