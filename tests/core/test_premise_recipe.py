"""train.py's two-stage recipe (the premise model, issue 20 item 5): the reference frame is dropped
at the asked rate, a dropped clip's mask and reference channels are what the host builds without a
start image (zeros), and the default recipe draws the same random stream as before, so the
committed model still reproduces."""
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "prompt_following"))
import task  # noqa: E402
import train  # noqa: E402


def test_reference_is_dropped_at_the_asked_rate():
    gen = torch.Generator().manual_seed(0)
    given = torch.cat([train.reference_given(gen, 0.4) for _ in range(500)])
    assert set(given.tolist()) == {0.0, 1.0}
    assert 0.37 < 1 - given.mean().item() < 0.43          # 4,000 clips: 3 standard errors is ±0.023


def test_default_recipe_draws_nothing_extra():
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert train.reference_given(gen, 0.0) is None
    assert torch.equal(gen.get_state(), state)


def test_dropped_clips_carry_no_reference_and_given_clips_are_unchanged():
    ref = torch.stack([task.reference(s) for s in task.split_scenes("val", 3)])
    plain = train.concat_inputs(ref)
    mixed = train.concat_inputs(ref, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(mixed[[0, 2]], plain[[0, 2]])
    assert not mixed[1].any()                  # WAN21.concat_cond with no start image: zero mask, zero image
    assert plain[1].any()
