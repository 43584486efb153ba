import pytest
import torch

from conftest import GRU_VS_TORCH_ATOL, STEP_VS_SEQ_ATOL, STEP_VS_SEQ_RTOL
from edgerf.cells import FAMILIES, ModelConfig, RecurrentClassifier
from edgerf.cells.gru import GRUCell
from edgerf.cells.lif import spike


def _model(family, layers=2, hidden=24, frontend=0, readout="linear"):
    m = RecurrentClassifier(ModelConfig(family=family, input_size=7, hidden=hidden, layers=layers, classes=5,
                                        frontend=frontend, readout=readout))
    if family == "lif":  # scale inputs so neurons actually spike in a short test
        with torch.no_grad():
            for c in m.cells:
                c.x_proj.weight.mul_(6.0)
    return m.eval()


@pytest.mark.parametrize("frontend,readout", [(0, "linear"), (2, "linear"), (0, "gated")])
@pytest.mark.parametrize("family", FAMILIES)
def test_sequence_forward_equals_step_loop(family, frontend, readout):
    m = _model(family, frontend=frontend, readout=readout)
    x = torch.randn(3, 50, 7)
    resets = torch.zeros(3, 50, dtype=torch.bool)
    resets[:, [0, 17, 33]] = True
    with torch.no_grad():
        for r in (None, resets):
            seq, seq_state = m(x, m.init_state(3), r)
            state, outs = m.init_state(3), []
            for t in range(50):
                if r is not None:
                    state = tuple(s * (~r[:, t, None]).float() for s in state)
                y, state = m.step(x[:, t], state)
                outs.append(y)
            torch.testing.assert_close(seq, torch.stack(outs, 1), atol=STEP_VS_SEQ_ATOL, rtol=STEP_VS_SEQ_RTOL)
            for a, b in zip(seq_state, state):
                torch.testing.assert_close(a, b, atol=STEP_VS_SEQ_ATOL, rtol=STEP_VS_SEQ_RTOL)


def test_gated_readout_clears_without_moving_the_class():
    """The gate scales the class scores: closing it goes to the uniform distribution (what the
    loss asks on noise) and never changes which class is on top while it is open."""
    m = _model("gru", readout="gated")
    y = torch.randn(64, 24)
    with torch.no_grad():
        scores = m.readout.scores(y)
        torch.testing.assert_close(m.readout(y).argmax(-1), scores.argmax(-1), rtol=0, atol=0)
        m.readout.gate.bias.fill_(-60.0)              # gate shut
        probs = torch.softmax(m.readout(y), -1)
    torch.testing.assert_close(probs, torch.full_like(probs, 1 / 5), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown readout"):
        RecurrentClassifier(ModelConfig(readout="softmax"))


@pytest.mark.parametrize("family", FAMILIES)
def test_state_names_and_shapes(family):
    m = _model(family)
    state = m.init_state(4)
    assert len(state) == len(m.state_names) == len(m.state_sizes())
    _, new = m.step(torch.randn(4, 7), state)
    assert [s.shape for s in new] == [torch.Size([4, n]) for n in m.state_sizes()]
    assert len(set(m.state_names)) == len(m.state_names)
    assert all(n.startswith(("l0_", "l1_")) for n in m.state_names)


@pytest.mark.parametrize("family", FAMILIES)
def test_state_carries_information(family):
    """A non-zero state must change the output: the recurrence is wired up."""
    m = _model(family, layers=1)
    x = torch.randn(2, 7)
    y0, _ = m.step(x, m.init_state(2))
    _, s = m(torch.randn(2, 30, 7) * 3)
    y1, _ = m.step(x, s)
    assert not torch.allclose(y0, y1)


def test_gru_matches_torch_gru_cell():
    ref = torch.nn.GRUCell(11, 16)
    ours = GRUCell.from_torch(ref)
    h_ref = h = torch.randn(5, 16)
    for _ in range(40):
        x = torch.randn(5, 11)
        h_ref = ref(x, h_ref)
        _, (h,) = ours.step(x, (h,))
    torch.testing.assert_close(h, h_ref, atol=GRU_VS_TORCH_ATOL, rtol=0)


def test_ssm_decay_is_stable_by_construction():
    m = _model("ssm", layers=1)
    cell = m.cells[0]
    with torch.no_grad():
        cell.log_rate.copy_(torch.linspace(-20, 5, cell.hidden))
    a = cell.decay()
    # a = exp(-exp(log_rate)) is in (0, 1) for every finite log_rate; at the extremes
    # fp32 rounds to 0 or to 1 - eps, never to 1 or above (which would be unstable).
    assert bool((a >= 0).all()) and a.max() < 1.0


def test_lif_spike_is_hard_at_inference_and_has_surrogate_gradient():
    v = torch.tensor([0.5, 0.999, 1.0, 1.7], requires_grad=True)
    assert spike(v, 1.0, 5.0, training=False).tolist() == [0.0, 0.0, 1.0, 1.0]
    s = spike(v, 1.0, 5.0, training=True)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0]           # forward is the exact step
    s.sum().backward()
    assert (v.grad > 0).all()                           # backward is the surrogate's
    assert v.grad[2] == pytest.approx(5.0 * 0.25)       # d/dv sigmoid(5(v-1)) at v=1


def test_lif_subtractive_reset_after_spike():
    m = _model("lif", layers=1, hidden=3)
    cell = m.cells[0]
    with torch.no_grad():
        cell.s_proj.weight.zero_()
        cell.logit_beta.fill_(100.0)  # beta = 1: no leak
    v0 = torch.tensor([[1.5, 0.2, 0.0]])
    pu = torch.tensor([[0.1, 0.1, 0.1]])
    _, (v, a) = cell.recur(pu, (v0, torch.zeros(1, 3)))
    # neuron 0 spiked at t-1 (v >= 1): v = 1.5 + 0.1 - 1.0
    torch.testing.assert_close(v, torch.tensor([[0.6, 0.3, 0.1]]))
