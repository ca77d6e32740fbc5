"""Mini-batch training, the loop every PyTorch model of the benchmarks is trained with.

The trained weights depend on everything here (the seeds, the order of the batches, the
optimizer and its settings), and the figures of RESULTS.md on the weights: a change to this loop
changes every model the scripts build. Each script says what one batch costs (its loss), and
keeps its own recipe (epochs, learning rate, seed, optimizer) in its arguments.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def train(model, rows: np.ndarray, batch_loss: Callable, epochs: int, lr: float, seed: int,
          batch: int = 128, sgd: bool = False, weight_decay: float = 0.0, masks=()):
    """Train ``model`` in place on ``rows`` (int indices of a data set) and return it in eval
    mode.

    Seeds torch (``torch.manual_seed(seed)``, before the optimizer is made) and draws every
    epoch's order of the rows from ``numpy.random.default_rng(seed)``; each epoch splits that
    order into ``len(rows) // batch`` batches (at least one) of about ``batch`` rows, and each
    batch takes one step on ``batch_loss(model, idx)`` (a scalar tensor; ``idx``: the batch's
    rows). The optimizer is Adam, or with ``sgd`` SGD with momentum 0.9 (fine-tuning), at
    learning rate ``lr`` and L2 ``weight_decay``. ``masks``: pairs (parameter, 0/1 tensor of its
    shape) multiplied into the parameters after every step (pruned weights stay zero)."""
    import torch
    torch.manual_seed(seed)
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
           if sgd else torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay))
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(rows), max(1, len(rows) // batch)):
            loss = batch_loss(model, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for p, mk in masks:
                        p.mul_(mk)
    return model.eval()
