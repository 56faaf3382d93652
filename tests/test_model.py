"""The U-Net (3D and 2D) and the tri-planar network: shapes, conditioning on time, divisibility, slabs."""
import pytest
import torch

from helpers import load_config
from mrisr.model.networks import TriplanarUNet, UNet, slab_shapes, thin_axis, timestep_embedding

NETWORK = load_config()["network"]


def unet(**settings) -> UNet:
    return UNet(**{**NETWORK, **settings})


@pytest.mark.parametrize("channel_mult,attention", [((1, 2, 4), True), ((1, 2), False)])
def test_output_has_the_input_grid(channel_mult, attention):
    network = unet(in_channels=2, out_channels=1, base_channels=8, channel_mult=channel_mult, attention=attention)
    x = torch.randn(2, 2, 16, 24, 32)
    assert network(x, torch.tensor([0, 999])).shape == (2, 1, 16, 24, 32)


def test_output_depends_on_the_timestep_once_trained_away_from_zero_init():
    torch.manual_seed(0)
    network = unet(base_channels=8, channel_mult=(1, 2))
    torch.nn.init.normal_(network.head[-1].weight)
    x = torch.randn(1, 2, 8, 8, 8)
    assert not torch.allclose(network(x, torch.tensor([1])), network(x, torch.tensor([900])))


def test_zero_initialised_head_predicts_no_correction():
    network = unet(base_channels=8, channel_mult=(1, 2))
    assert torch.count_nonzero(network(torch.randn(1, 2, 8, 8, 8), torch.tensor([3]))) == 0


def test_sizes_not_divisible_by_the_downsampling_are_rejected():
    with pytest.raises(ValueError, match="divisible by 4"):
        unet(base_channels=8)(torch.randn(1, 2, 10, 16, 16), torch.tensor([0]))


def test_timestep_embedding_is_sinusoidal():
    embedding = timestep_embedding(torch.tensor([0, 10]), 16)
    assert embedding.shape == (2, 16)
    torch.testing.assert_close(embedding[0, :8], torch.ones(8))  # cos(0)
    torch.testing.assert_close(embedding[0, 8:], torch.zeros(8))  # sin(0)


def test_two_dimensional_network_takes_slices_and_thin_slabs():
    torch.manual_seed(0)
    network = unet(base_channels=8, channel_mult=(1, 2), spatial_dims=2)
    assert not any(isinstance(m, torch.nn.Conv3d) for m in network.modules())
    torch.nn.init.normal_(network.head[-1].weight)
    slices = torch.randn(3, 2, 16, 24)
    assert network(slices, torch.tensor([0, 5, 999])).shape == (3, 1, 16, 24)
    for axis in (2, 3, 4):  # a slab of thickness 1 along any axis is one 2D slice per batch item
        slab = slices.unsqueeze(axis)
        out = network(slab, torch.tensor([0, 5, 999]))
        assert out.shape == (3, 1, *slab.shape[2:])
        torch.testing.assert_close(out.squeeze(axis), network(slices, torch.tensor([0, 5, 999])))


def test_two_dimensional_network_rejects_thick_slabs_and_bad_dims():
    network = unet(base_channels=8, channel_mult=(1, 2), spatial_dims=2)
    with pytest.raises(ValueError, match="length 1"):
        network(torch.randn(1, 2, 4, 8, 8), torch.tensor([0]))
    with pytest.raises(ValueError, match="spatial_dims"):
        unet(spatial_dims=1)


def test_triplanar_network_sends_each_slab_to_its_plane():
    torch.manual_seed(0)
    network = TriplanarUNet(**{**NETWORK, "base_channels": 8, "channel_mult": [1, 2]})
    for plane in network.planes:
        torch.nn.init.normal_(plane.head[-1].weight)
    assert slab_shapes([16, 24, 32]) == [[1, 24, 32], [16, 1, 32], [16, 24, 1]]
    t = torch.tensor([3, 700])
    for axis, shape in enumerate(slab_shapes([16, 24, 32])):
        slab = torch.randn(2, 2, *shape)
        assert thin_axis(slab.shape[2:]) == axis
        torch.testing.assert_close(network(slab, t), network.planes[axis](slab, t))
    with pytest.raises(ValueError, match="one voxel thin"):
        network(torch.randn(1, 2, 8, 8, 8), torch.tensor([0]))
