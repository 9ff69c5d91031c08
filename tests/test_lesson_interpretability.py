"""aicourse.lessons.interpretability (notebook 28) against Captum on a small random CNN, float64."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

warnings.filterwarnings("ignore", message="IProgress not found")   # captum's tqdm.auto without ipywidgets
captum_attr = pytest.importorskip("captum.attr")

from aicourse.lessons.cnn_training import from_torch
from aicourse.lessons.interpretability import grad_cam, integrated_gradients, occlusion, saliency

warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(24, 5)).double().eval()
    x = np.random.default_rng(0).random((3, 1, 8, 8))
    return net, from_torch(net), x, np.array([0, 3, 4])


def test_saliency_and_ig_match_captum(model):
    net, ours, x, t = model
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    np.testing.assert_allclose(saliency(ours, x, t), captum_attr.Saliency(net).attribute(xt, target=tt).numpy(),
                               rtol=1e-10, atol=1e-14)
    ref, delta = captum_attr.IntegratedGradients(net).attribute(xt, target=tt, n_steps=20,
                                                                return_convergence_delta=True)
    attr, ours_delta = integrated_gradients(ours, x, t, n_steps=20, float32_weights=True)
    np.testing.assert_allclose(attr, ref.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours_delta, delta.numpy(), rtol=1e-8, atol=1e-12)


def test_ig_with_a_nonzero_baseline_matches_captum(model):
    """With the baseline 0, (x - x') and x are the same factor; only a non-zero baseline tells them apart."""
    net, ours, x, t = model
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    ref, delta = captum_attr.IntegratedGradients(net).attribute(xt, baselines=0.5, target=tt, n_steps=20,
                                                                return_convergence_delta=True)
    attr, ours_delta = integrated_gradients(ours, x, t, baseline=np.full_like(x, 0.5), n_steps=20,
                                            float32_weights=True)
    scale = np.abs(ref.numpy()).max()
    np.testing.assert_allclose(attr, ref.numpy(), rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(ours_delta, delta.numpy(), rtol=1e-8, atol=1e-12 * scale)


def test_occlusion_and_grad_cam_match_captum(model):
    net, ours, x, t = model
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    _, total, count = occlusion(ours, x, t, window=3, stride=1)
    ref = captum_attr.Occlusion(net).attribute(xt, target=tt, sliding_window_shapes=(1, 3, 3), strides=(1, 1, 1),
                                               baselines=0)
    np.testing.assert_allclose(total.astype(np.float32) / count.astype(np.float32), ref.numpy(), rtol=1e-6, atol=1e-7)
    cam = captum_attr.LayerGradCam(net, net[4]).attribute(xt, target=tt)
    np.testing.assert_allclose(grad_cam(ours, x, t, layer=4, relu=False), cam.detach().numpy(), rtol=1e-10,
                               atol=1e-14)


@pytest.mark.parametrize("window,stride", [(3, 2), (4, 3), (2, 2)])
def test_occlusion_with_strides_matches_captum(model, window, stride):
    """Stride > 1 in both axes; (3, 2) and (4, 3) end with a window that Captum cuts at the border."""
    net, ours, x, t = model
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    _, total, count = occlusion(ours, x, t, window=window, stride=stride)
    ref = captum_attr.Occlusion(net).attribute(xt, target=tt, sliding_window_shapes=(1, window, window),
                                               strides=(1, stride, stride), baselines=0).numpy()
    mine = total.astype(np.float32) / count.astype(np.float32)
    np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("layer", [0, 3])
def test_grad_cam_at_layers_with_negative_maps(model, layer):
    """Before their ReLU the conv outputs are signed, so the sum has negative values: an extra ReLU would show."""
    net, ours, x, t = model
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    for relu in (False, True):
        ref = captum_attr.LayerGradCam(net, net[layer]).attribute(xt, target=tt, relu_attributions=relu)
        ref = ref.detach().numpy()
        if not relu:
            assert (ref < 0).any() and (ref > 0).any()
        np.testing.assert_allclose(grad_cam(ours, x, t, layer=layer, relu=relu), ref, rtol=1e-10,
                                   atol=1e-12 * np.abs(ref).max())
