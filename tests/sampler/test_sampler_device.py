"""``Sampler.to`` takes the devices the Trainer takes, with its messages."""
import pytest
import torch

from kgsampler import make_synthetic


@pytest.fixture(scope='module')
def ds():
    return make_synthetic(num_users=12, num_items=15, num_genres=2,
                          num_creators=3, num_eras=2, seed=0)


def test_auto_and_cpu(ds, make_sampler):
    sampler = make_sampler(ds)
    for dev in ('auto', 'cpu', torch.device('cpu')):
        sampler.to(dev)
        users = torch.arange(4)
        pos = ds.train_pos.indices[ds.train_pos.indptr[:4]]
        out = sampler.sample(users, pos, 2)
        want = 'cuda' if dev == 'auto' and torch.cuda.is_available() \
            else 'cpu'
        assert out.neg_items.device.type == want


@pytest.mark.parametrize('bad', ['gpu', 'cuda:x', 3.5])
def test_not_a_device(ds, make_sampler, bad):
    sampler = make_sampler(ds)
    name = type(sampler).__name__
    with pytest.raises(ValueError, match=rf"{name}.to: 'device' must be "
                       rf"'cpu', 'cuda', 'cuda:N' or 'auto' \(got "):
        sampler.to(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is present')
def test_cuda_without_cuda(ds, make_sampler):
    sampler = make_sampler(ds)
    name = type(sampler).__name__
    with pytest.raises(ValueError, match=rf"{name}.to: device='cuda' but "
                       r"CUDA is not available here; use 'cpu' or 'auto'"):
        sampler.to('cuda')
