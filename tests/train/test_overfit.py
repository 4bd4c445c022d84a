"""A tiny GPT memorises one batch: the model, the LM loss and backprop fit together."""
import pytest
import torch

from genforge.models.gpt import GPT, GPTConfig
from genforge.objectives.lm import LMObjective


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_overfit_one_batch(flavour):
    torch.manual_seed(0)
    model = GPT(GPTConfig(flavour=flavour, vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=64))
    objective = LMObjective(model)
    block = torch.randint(0, 40, (4, 33), generator=torch.Generator().manual_seed(0))
    batch = block[:, :-1], block[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, metrics = objective.loss(batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first == pytest.approx(torch.log(torch.tensor(40.0)).item(), abs=0.3)  # starts at chance
    assert metrics["tokens"] == 4 * 32
    model.eval()
    with torch.no_grad():
        final = objective.loss(batch)[0].item()
    assert final < 0.05
