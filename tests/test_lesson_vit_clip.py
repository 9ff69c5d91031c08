"""aicourse.lessons.vit_clip (notebook 36) against torch and Hugging Face: the patch embedding as a strided
convolution and as ViTEmbeddings, ViTModel's forward and backward under either version's module names, CLIP's
symmetric loss and its gradients against CLIPModel(return_loss=True), and the text tower's pooled token."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.vit_clip import (clip_loss_backward, clip_loss_forward, clip_text_pool_index, l2_normalize,
                                       l2_normalize_backward, patch_embed_backward, patch_embed_forward, patchify,
                                       unpatchify, vit_backward, vit_embed_backward, vit_embed_forward, vit_forward,
                                       vit_params, vit_to_hf)

from lesson_tools import TOL, rel, t

transformers = pytest.importorskip("transformers")


def test_patch_embedding_is_conv2d_with_stride_p_forward_and_backward():
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((2, 3, 8, 12)), rng.standard_normal((5, 3, 4, 4)), rng.standard_normal(5)
    y, cache = patch_embed_forward(x, W, b, 4)
    dy = rng.standard_normal(y.shape)
    xt, Wt, bt = t(x, True), t(W, True), t(b, True)
    yt = F.conv2d(xt, Wt, bt, stride=4).flatten(2).transpose(1, 2)
    yt.backward(t(dy))
    dx, dW, db = patch_embed_backward(dy, cache)
    assert rel(y, yt) < TOL and rel(dx, xt.grad) < TOL and rel(dW, Wt.grad) < TOL and rel(db, bt.grad) < TOL
    assert np.array_equal(unpatchify(patchify(x, 4), 3, 8, 12, 4), x)
    with pytest.raises(ValueError, match="whole number"):
        patchify(x, 5)


def test_vit_embeddings_equal_hf():
    from transformers import ViTConfig
    from transformers.models.vit.modeling_vit import ViTEmbeddings
    rng = np.random.default_rng(1)
    cfg = ViTConfig(image_size=8, patch_size=4, num_channels=2, hidden_size=6)
    emb = ViTEmbeddings(cfg).double().eval()
    w = {k: v.detach().numpy() for k, v in emb.named_parameters()}
    x, dh = rng.standard_normal((3, 2, 8, 8)), rng.standard_normal((3, 5, 6))
    h, cache = vit_embed_forward(x, w["patch_embeddings.projection.weight"], w["patch_embeddings.projection.bias"],
                                 w["cls_token"], w["position_embeddings"], 4)
    xt = t(x, True)
    ht = emb(xt)
    ht.backward(t(dh))
    dx, dW, db, dcls, dpos = vit_embed_backward(dh, cache)
    assert rel(h, ht) < TOL and rel(dx, xt.grad) < TOL
    for ours, name in ((dW, "patch_embeddings.projection.weight"), (db, "patch_embeddings.projection.bias"),
                       (dcls, "cls_token"), (dpos, "position_embeddings")):
        assert rel(ours, emb.get_parameter(name).grad) < TOL, name


def test_vit_model_forward_and_every_gradient_equal_hf():
    from transformers import ViTConfig, ViTModel
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    cfg = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=24, attn_implementation="sdpa")
    model = ViTModel(cfg).double().eval()
    p = vit_params(model)
    names = list(model.state_dict())
    assert {k: v.shape for k, v in vit_to_hf(p, names).items()} == {k: v.shape for k, v in model.state_dict().items()}
    x = rng.standard_normal((3, 1, 8, 8))
    last, pooled, cache = vit_forward(x, p, 2, 4, cfg.layer_norm_eps)
    dl, dp = rng.standard_normal(last.shape), rng.standard_normal(pooled.shape)
    xt = t(x, True)
    out = model(pixel_values=xt)
    ((out.last_hidden_state * t(dl)).sum() + (out.pooler_output * t(dp)).sum()).backward()
    assert rel(last, out.last_hidden_state) < TOL and rel(pooled, out.pooler_output) < TOL
    dx, g = vit_backward(dl, dp, cache)
    assert rel(dx, xt.grad) < TOL
    g_hf = vit_to_hf(g, names)
    for name, prm in model.named_parameters():
        if name.endswith(("k_proj.bias", "attention.key.bias")):   # exactly zero: softmax ignores q . b_k
            assert np.abs(g_hf[name]).max() < 1e-12 and prm.grad.abs().max() < 1e-12
        else:
            assert rel(g_hf[name], prm.grad) < TOL, name


def test_vit_names_of_transformers_4_map_too():
    """vit_params / vit_to_hf read the 4.x names ("encoder.layer.i.attention.attention.query") as well."""
    rng = np.random.default_rng(3)
    E = 4
    old = {"embeddings.cls_token": 1, "embeddings.position_embeddings": 1,
           "embeddings.patch_embeddings.projection.weight": 1, "embeddings.patch_embeddings.projection.bias": 1,
           "layernorm.weight": 1, "layernorm.bias": 1, "pooler.dense.weight": 1, "pooler.dense.bias": 1}
    for part in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                 "attention.output.dense", "intermediate.dense", "output.dense", "layernorm_before",
                 "layernorm_after"):
        old.update({f"encoder.layer.0.{part}.weight": 1, f"encoder.layer.0.{part}.bias": 1})
    state = {k: torch.tensor(rng.standard_normal((E, E) if k.endswith("weight") else E)) for k in old}
    p = vit_params(state)
    assert np.array_equal(p["layers.0.self_attn.in_proj_weight"][E:2 * E],
                          state["encoder.layer.0.attention.attention.key.weight"].numpy())
    back = vit_to_hf(p, list(state))
    assert set(back) == set(state) and all(np.array_equal(back[k], state[k].numpy()) for k in state)


def _tiny_clip(eos=19):
    from transformers import CLIPConfig, CLIPModel
    txt = dict(vocab_size=20, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
               max_position_embeddings=6, bos_token_id=18, eos_token_id=eos, pad_token_id=0)
    img = dict(image_size=4, patch_size=2, num_channels=1, hidden_size=12, intermediate_size=16,
               num_hidden_layers=1, num_attention_heads=2)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)          # transformers 4.46 builds the text mask in the default dtype
    try:
        torch.manual_seed(0)
        return CLIPModel(CLIPConfig(text_config=txt, vision_config=img, projection_dim=5)).eval()
    finally:
        torch.set_default_dtype(old)


def test_clip_loss_and_gradients_equal_hf():
    rng = np.random.default_rng(4)
    model = _tiny_clip()
    n = 4
    ids = np.array([[18, 3, 4, 19, 0, 0], [18, 5, 19, 0, 0, 0], [18, 7, 8, 9, 19, 0], [18, 2, 19, 0, 0, 0]])
    pix = t(rng.standard_normal((n, 1, 4, 4)))
    W_img, W_txt, t0 = rng.standard_normal((5, 12)), rng.standard_normal((5, 8)), 0.7
    with torch.no_grad():
        model.visual_projection.weight.copy_(t(W_img))
        model.text_projection.weight.copy_(t(W_txt))
        model.logit_scale.fill_(t0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        f_img = model.vision_model(pixel_values=pix).pooler_output.detach().numpy()
        text = model.text_model(input_ids=torch.tensor(ids))
        out = model(input_ids=torch.tensor(ids), pixel_values=pix, return_loss=True)
    finally:
        torch.set_default_dtype(old)
    f_txt = text.pooler_output.detach().numpy()
    assert rel(text.last_hidden_state.detach().numpy()[np.arange(n), clip_text_pool_index(ids, 19)], f_txt) < TOL
    loss, logits, cache = clip_loss_forward(f_img, f_txt, W_img, W_txt, t0)
    assert rel(loss, out.loss) < TOL and rel(logits, out.logits_per_image) < TOL
    out.loss.backward()
    dfi, dft, dWi, dWt, dt = clip_loss_backward(1.0, cache)
    assert rel(dWi, model.visual_projection.weight.grad) < TOL
    assert rel(dWt, model.text_projection.weight.grad) < TOL
    assert rel(dt, model.logit_scale.grad) < TOL
    # the features' gradients against autograd through the same formula
    fi, ft, tt = t(f_img, True), t(f_txt, True), t(t0, True)
    a, b = F.normalize(fi @ t(W_img).T, dim=-1), F.normalize(ft @ t(W_txt).T, dim=-1)
    S = tt.exp() * a @ b.T
    target = torch.arange(n)
    (0.5 * (F.cross_entropy(S, target) + F.cross_entropy(S.T, target))).backward()
    assert rel(dfi, fi.grad) < TOL and rel(dft, ft.grad) < TOL and rel(dt, tt.grad) < TOL


def test_l2_normalize_backward_is_autograd():
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    y, cache = l2_normalize(x)
    xt = t(x, True)
    F.normalize(xt, dim=-1).backward(t(dy))
    assert rel(y, F.normalize(t(x), dim=-1)) < TOL and rel(l2_normalize_backward(dy, cache), xt.grad) < TOL


@pytest.mark.parametrize("eos", [19, 2])
def test_text_pool_index_is_the_token_hf_pools(eos):
    """The first eos_token_id, or argmax(input_ids) for eos_token_id == 2 configs (here: [BOS], id 18)."""
    from transformers import CLIPTextConfig, CLIPTextModel
    ids = np.array([[18, 3, eos, 0], [18, 17, 5, eos]])
    assert clip_text_pool_index(ids, eos).tolist() == ([2, 3] if eos == 19 else [0, 0])
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        tower = CLIPTextModel(CLIPTextConfig(vocab_size=20, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, max_position_embeddings=4, bos_token_id=18,
                                             eos_token_id=eos, pad_token_id=0)).eval()
        out = tower(input_ids=torch.tensor(ids))
    finally:
        torch.set_default_dtype(old)
    assert rel(out.last_hidden_state.detach().numpy()[np.arange(2), clip_text_pool_index(ids, eos)],
               out.pooler_output) < TOL
