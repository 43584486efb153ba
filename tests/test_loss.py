import math

import pytest
import torch

from edgerf.loss import TRAINING_MODES, kl_uniform, stream_loss


def test_kl_uniform_hand_computed():
    # p = softmax([0, log 3]) = [1/4, 3/4]; KL(U||p) = 1/2 (log(1/2) - log(1/4)) + 1/2 (log(1/2) - log(3/4))
    logits = torch.tensor([0.0, math.log(3.0)])
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert kl_uniform(logits).item() == pytest.approx(expected, abs=1e-6)
    assert kl_uniform(torch.zeros(7)).item() == pytest.approx(0.0, abs=1e-6)


def test_reset_free_loss_hand_computed():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)], [2.0, 2.0]]])  # [1, 3, 2]
    labels = torch.tensor([[1, 0, -1]])
    mask = torch.tensor([[True, True, False]])
    ce1, ce0 = -math.log(0.75), -math.log(0.25)
    kl = 0.0  # equal logits: uniform
    assert stream_loss(logits, labels, mask, "reset-free").item() == pytest.approx((ce1 + ce0 + kl) / 3, abs=1e-6)
    # ce: mean over informative steps only, the noise step contributes nothing
    assert stream_loss(logits, labels, mask, "ce").item() == pytest.approx((ce1 + ce0) / 2, abs=1e-6)


def test_reset_free_loss_penalises_confidence_on_noise_only():
    labels = torch.tensor([[0]])
    noise = torch.tensor([[False]])
    confident = torch.tensor([[[5.0, 0.0, 0.0]]])
    assert stream_loss(confident, labels, noise, "reset-free") > 1.0
    assert stream_loss(confident, labels, noise, "ce") == 0.0


def test_training_modes_table():
    assert TRAINING_MODES["periodic-reset"].oracle_reset and TRAINING_MODES["periodic-reset"].loss == "ce"
    assert not TRAINING_MODES["reset-free"].oracle_reset and TRAINING_MODES["reset-free"].loss == "reset-free"
    assert not TRAINING_MODES["ce"].oracle_reset and TRAINING_MODES["ce"].loss == "ce"
    with pytest.raises(ValueError):
        stream_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool), "mse")
