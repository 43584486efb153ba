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


@pytest.mark.parametrize("weight", [0.0, 1.0, 4.0])
def test_the_marked_steps_after_a_sample_take_the_kl_term_times_the_end_weight(weight):
    """--grace marks noise steps; their KL term is weighted --end-weight: 0 (the default) is
    the grace, no loss there; 1 is the paper's loss; every other step keeps its term, and
    the mean stays over all steps."""
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 3)
    labels = torch.tensor([[1, 0, 0, 0]])
    mask = torch.tensor([[True, False, False, False]])
    marked = torch.tensor([[False, True, False, False]])
    ce = torch.nn.functional.cross_entropy(logits[0, :1], labels[0, :1]).item()
    kl = kl_uniform(logits[0]).tolist()
    assert stream_loss(logits, labels, mask, "reset-free", marked, end_weight=weight).item() == pytest.approx(
        (ce + weight * kl[1] + kl[2] + kl[3]) / 4, abs=1e-6)
    assert stream_loss(logits, labels, mask, "reset-free", torch.zeros_like(marked), end_weight=weight).item() == \
        pytest.approx(stream_loss(logits, labels, mask, "reset-free").item())
    assert stream_loss(logits, labels, mask, "ce", marked, end_weight=weight).item() == \
        stream_loss(logits, labels, mask, "ce").item()


def test_end_weight_without_the_steps_it_weights_is_refused():
    from edgerf.configs import TrainConfig
    from edgerf.train import train
    for cfg in (TrainConfig(end_weight=4.0), TrainConfig(end_weight=4.0, grace=3, loss="ce")):
        with pytest.raises(ValueError, match="--end-weight.*--grace N"):
            train(cfg, progress=False)


def test_grace_covers_the_noise_steps_right_after_each_sample():
    import numpy as np

    from edgerf.runtime.stream import Stream
    mask = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0], bool)      # samples end at 2 and 6
    s = Stream(np.zeros((9, 1), np.float32), np.where(mask, 0, -1), mask, np.array([1, 5]), np.array([2, 6]))
    assert s.after_ends(2).nonzero()[0].tolist() == [3, 4, 7, 8]
    assert s.after_ends(5).nonzero()[0].tolist() == [3, 4, 5, 7, 8]   # never an informative step
    assert not s.after_ends(0).any()
