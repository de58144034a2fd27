"""FastDropout: the CPU dropout the training loop swaps in for nn.Dropout."""

import pytest
import torch
from torch import nn

from modelfoundry.models.dropout import FastDropout, keep_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drops_a_fraction_p_and_scales_what_it_keeps(p):
    torch.manual_seed(0)
    x = torch.full((1000, 1000), 2.0)
    y = FastDropout(p).train()(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 0.003  # a million Bernoulli draws: std ~0.0005
    assert torch.allclose(y[y != 0], torch.tensor(2.0 / (1 - p)))


def test_masks_are_independent_of_position_and_between_calls():
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([4000, 64]), 0.3).float()
    # every position of a 64-wide row and every row block keeps ~70%: no lane of the 64-bit draws is biased
    assert (mask.mean(0) - 0.7).abs().max() < 0.04
    assert (mask.view(40, -1).mean(1) - 0.7).abs().max() < 0.04
    second = keep_mask(torch.Size([4000, 64]), 0.3).float()
    assert abs(float((mask == second).float().mean()) - (0.7 ** 2 + 0.3 ** 2)) < 0.01


def test_seeded_reproducible_eval_is_identity_and_gradient_follows_the_mask():
    x = torch.randn(8, 33, requires_grad=True)  # 264 elements: not a multiple of the 4 per draw
    drop = FastDropout(0.25).train()
    torch.manual_seed(7)
    a = drop(x)
    torch.manual_seed(7)
    assert torch.equal(a, drop(x))
    a.sum().backward()
    expected = (a != 0).float() / 0.75
    assert torch.allclose(x.grad, expected)
    assert drop.eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    half = FastDropout(0.5).train()(torch.ones(64, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16 and set(half.tolist()) <= {0.0, 2.0}


def test_use_fast_dropout_swaps_every_plain_dropout_and_keeps_the_state_dict():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.ModuleDict({"a": nn.Dropout(0.1), "b": nn.Dropout(0.0)}),
                          nn.Sequential(nn.Dropout(0.3)))
    keys = list(model.state_dict())
    assert use_fast_dropout(model) == 3
    assert isinstance(model[1], FastDropout) and model[1].p == 0.2
    assert isinstance(model[2]["a"], FastDropout) and isinstance(model[2]["b"], nn.Dropout)  # p=0 left alone
    assert isinstance(model[3][0], FastDropout) and model[3][0].p == 0.3
    assert list(model.state_dict()) == keys
    with pytest.raises(ValueError, match=r"in \[0, 1\), got 1.0"):
        FastDropout(1.0)


def test_peft_lora_dropout_is_swapped(tiny_bert):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    model = get_peft_model(AutoModel.from_pretrained(tiny_bert), LoraConfig(r=2, lora_dropout=0.1, target_modules=["query"]))
    assert use_fast_dropout(model) > 0
    assert not any(type(m) is nn.Dropout and m.p > 0 for m in model.modules())
    assert any(isinstance(m, FastDropout) for n, m in model.named_modules() if "lora_dropout" in n)
