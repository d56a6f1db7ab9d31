"""Surgery on copies: the user's network untouched, identity where shapes allow, adapters, re-fits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vizcnn.ablation.surgery import Removed, ZeroChannels, ablate
from vizcnn.ablation.variants import find_blocks, parse_units, parse_variant
from vizcnn.core.errors import VizError
from vizcnn.hooks import capture


def small_net() -> nn.Sequential:
    """conv 3->4, ReLU, conv 4->4 (same shape), ReLU, conv 4->8, pool, flatten, fc 8*4*4->12,
    ReLU, fc 12->6, ReLU, fc 6->5, with BatchNorm so that state matters."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 0
        nn.BatchNorm2d(4),  # 1
        nn.ReLU(),  # 2
        nn.Conv2d(4, 4, 3, padding=1),  # 3: same shape
        nn.ReLU(),  # 4
        nn.Conv2d(4, 8, 3, padding=1),  # 5: more channels
        nn.MaxPool2d(2),  # 6
        nn.Flatten(),  # 7
        nn.Linear(8 * 4 * 4, 12),  # 8
        nn.ReLU(),  # 9
        nn.Linear(12, 6),  # 10
        nn.ReLU(),  # 11
        nn.Linear(6, 5),  # 12
    )


def example() -> torch.Tensor:
    return torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_users_model_untouched_and_copy_shares_nothing() -> None:
    net = small_net().train()
    net[3].requires_grad_(False)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    grads = [p.requires_grad for p in net.parameters()]
    ids = [id(m) for m in net.modules()]
    cut = ablate(net, ["3", "5"], units={"0": "1"}, example=example())
    assert [id(m) for m in net.modules()] == ids
    assert isinstance(net[3], nn.Conv2d) and isinstance(net[5], nn.Conv2d)
    assert [m.training for m in net.modules()] == flags
    assert [p.requires_grad for p in net.parameters()] == grads
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key  # BatchNorm statistics included
    ours = {p.data_ptr() for p in cut.module.parameters()}
    assert not ours & {p.data_ptr() for p in net.parameters()}
    # kept layers carry the original values
    torch.testing.assert_close(cut.module[8].weight, net[8].weight)
    assert all(not any(True for _ in m._forward_hooks.values()) for m in net.modules())


def test_removed_same_shape_layer_is_identity() -> None:
    net = small_net().eval()
    cut = ablate(net, ["3", "4"], example=example())
    assert [c.kind for c in cut.changes] == ["identity", "identity"]
    assert not cut.needs_training
    by_hand = nn.Sequential(*[m for i, m in enumerate(net) if i not in (3, 4)]).eval()
    x = example()
    with torch.no_grad():
        torch.testing.assert_close(cut.module(x), by_hand(x))
    assert cut.params_removed == params(net[3])


def test_removing_an_identity_layer_changes_nothing() -> None:
    net = small_net().eval()
    with torch.no_grad():  # conv 3 as the identity: centre tap 1 on the diagonal
        net[3].weight.zero_()
        net[3].bias.zero_()
        for c in range(4):
            net[3].weight[c, c, 1, 1] = 1.0
    x = example()
    cut = ablate(net, ["3"], example=x)
    with torch.no_grad():
        torch.testing.assert_close(cut.module(x), net(x))


def test_adapter_where_channels_change() -> None:
    net = small_net().eval()
    x = example()
    cut = ablate(net, ["5"], example=x, seed=3)
    assert [c.kind for c in cut.changes] == ["adapter"]
    adapter = cut.module[5].adapter
    assert isinstance(cut.module[5], Removed) and isinstance(adapter, nn.Conv2d)
    assert adapter.kernel_size == (1, 1) and (adapter.in_channels, adapter.out_channels) == (4, 8)
    assert cut.needs_training and set(cut.new_params) == {"5.adapter.weight", "5.adapter.bias"}
    assert cut.params_removed == params(net[5]) - (4 * 8 + 8)
    with torch.no_grad():  # oracle: the adapter applied by hand at the removal site
        h = net[4](net[3](net[2](net[1](net[0](x)))))
        h = torch.einsum("bchw,oc->bohw", h, adapter.weight[:, :, 0, 0]) + adapter.bias.view(
            1, -1, 1, 1
        )
        for i in range(6, 13):
            h = net[i](h)
        torch.testing.assert_close(cut.module(x), h)


def test_adapter_pools_where_size_changes() -> None:
    net = small_net().eval()
    cut = ablate(net, ["5", "6"], example=example())
    # 5 changes channels at 8x8 (1x1 conv), 6 halves the size (pooling, no parameters)
    assert [c.kind for c in cut.changes] == ["adapter", "adapter"]
    assert "pooling to 4x4" in cut.changes[1].detail
    assert cut.module(example()).shape == (3, 5)


def test_removed_hidden_fc_refits_the_next_linear() -> None:
    net = small_net().eval()
    cut = ablate(net, ["10", "11"], example=example(), seed=1)
    refit = [c for c in cut.changes if c.kind == "refit"]
    assert [c.layer for c in refit] == ["12"]
    assert cut.module[12].in_features == 12 and cut.module[12].out_features == 5
    # exact parameter count: fc 12->6 gone, fc 6->5 replaced by fc 12->5
    assert cut.params_removed == (12 * 6 + 6) + (6 * 5 + 5) - (12 * 5 + 5)
    assert cut.head == "12" and set(cut.new_params) == {"12.weight", "12.bias"}
    both = ablate(net, ["8", "9", "10", "11"], example=example())
    assert both.module[12].in_features == 8 * 4 * 4


def test_same_seed_same_adapter_weights() -> None:
    net = small_net()
    a = ablate(net, ["5"], example=example(), seed=7).module[5].adapter.weight
    b = ablate(net, ["5"], example=example(), seed=7).module[5].adapter.weight
    c = ablate(net, ["5"], example=example(), seed=8).module[5].adapter.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (["4x"], "unknown layer '4x'"),
        (["12"], "disconnects the network"),
        ([""], "whole network"),
        (["3", "3"], "named twice"),
    ],
)
def test_bad_removals_are_one_line_errors(layers: list[str], message: str) -> None:
    with pytest.raises(VizError, match=message) as info:
        ablate(small_net(), layers, example=example())
    assert "\n" not in str(info.value)


def test_nested_removal_refused() -> None:
    outer = nn.Sequential(small_net())
    with pytest.raises(VizError, match="inside 0"):
        ablate(outer, ["0", "0.3"], example=example())


def test_unit_zeroing_zeroes_exactly_the_named_channels() -> None:
    net = small_net().eval()
    x = example()
    cut = ablate(net, units={"5": "1,6"}, example=x)
    assert isinstance(cut.module[5], ZeroChannels)
    with capture(net, ["5"]) as before, torch.no_grad():
        before.run(x)
    with capture(cut.module, ["5"]) as after, torch.no_grad():
        after.run(x)
    expected = before["5"].clone()
    expected[:, [1, 6]] = 0
    assert torch.equal(after["5"], expected)
    assert cut.params_removed == 2 * (4 * 9 + 1)  # two output filters and their biases
    with pytest.raises(VizError, match="channel"):
        ablate(net, units={"5": "9"}, example=x)  # conv 5 has 8 channels


def test_variant_parsing() -> None:
    assert parse_variant("no-fc=8, 10").remove == ("8", "10")
    assert parse_units("features.3:0,5").units == (("features.3", "0,5"),)
    for bad in ("nolayers", "x=", "control=3", "a b=3"):
        with pytest.raises(VizError):
            parse_variant(bad)


def test_find_blocks_resnet() -> None:
    from torchvision.models import resnet18

    names = [b.name for b in find_blocks(resnet18(weights=None))]
    assert names == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]


@pytest.mark.slow
def test_lite0_block_removal_equals_zeroed_residual_branch() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0").eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    blocks = find_blocks(net)
    assert [b.name for b in blocks] == [f"_blocks.{i}" for i in range(16)]
    cut = ablate(net, ["_blocks.6"], example=x)  # a skip-connection block (80 -> 80 channels)
    assert [c.kind for c in cut.changes] == ["identity"]
    zeroed = ablate(net, [], example=x).module  # a plain copy
    with torch.no_grad():  # the residual branch ends in _bn2: zero its affine output
        zeroed._blocks[6]._bn2.weight.zero_()
        zeroed._blocks[6]._bn2.bias.zero_()
        torch.testing.assert_close(cut.module(x), zeroed(x))
    assert ablate(net, ["_blocks.5"], example=x).needs_training  # downsampling block
