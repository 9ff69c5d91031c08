"""aicourse.lessons.optimizers against torch.optim: same parameters, same gradients, same trajectory."""
import numpy as np
import pytest
import torch

from aicourse.lessons.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop, step_decay_lr, warmup_cosine_lr

SHAPES = [[(3,)], [(4, 5), (5,)], [(2, 3, 4), (1,), (6, 2)]]
CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    (Adam, torch.optim.Adam, dict()),
    (Adam, torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (AdamW, torch.optim.AdamW, dict()),
    (AdamW, torch.optim.AdamW, dict(lr=0.05, betas=(0.85, 0.95), weight_decay=0.3)),
    (Adagrad, torch.optim.Adagrad, dict()),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-6)),
    (RMSprop, torch.optim.RMSprop, dict()),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, momentum=0.9)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05, momentum=0.5, centered=True)),
]


def run_both(ours_cls, torch_cls, kw, shapes, steps=50, seed=0, grad_fn=None):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) for s in shapes]
    tparams = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    ours, theirs = ours_cls(params, **kw), torch_cls(tparams, **kw)
    worst = 0.0
    for _ in range(steps):
        grads = [rng.standard_normal(p.shape) if grad_fn is None else grad_fn(p) for p in params]
        ours.step(grads)
        for t, g in zip(tparams, grads):
            t.grad = torch.tensor(g, dtype=torch.float64)
        theirs.step()
        for p, t in zip(params, tparams):
            ref = t.detach().numpy()
            worst = max(worst, np.abs(p - ref).max() / max(1e-8, np.abs(ref).max()))
    return params, tparams, worst


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("ours_cls,torch_cls,kw", CASES)
def test_trajectory_matches_torch(ours_cls, torch_cls, kw, shapes):
    _, _, worst = run_both(ours_cls, torch_cls, kw, shapes)
    assert worst < 1e-12


@pytest.mark.parametrize("ours_cls,torch_cls,kw", CASES)
def test_quadratic_descent_matches_torch(ours_cls, torch_cls, kw):
    # gradients that depend on the parameters (L = |p - 1|^2 / 2): errors would compound
    _, _, worst = run_both(ours_cls, torch_cls, kw, [(3, 3)], steps=100, grad_fn=lambda p: p - 1.0)
    assert worst < 1e-12


def test_updates_in_place():
    p = np.ones(3)
    before = p
    Adam([p], lr=0.1).step([np.ones(3)])
    assert p is before and np.all(p < 1)


def test_wrong_adam_is_rejected():
    # common mistake 2: theta <- theta - lr * (m_hat + v_hat)
    rng = np.random.default_rng(1)
    p = rng.standard_normal(5); t = torch.tensor(p, requires_grad=True)
    opt = torch.optim.Adam([t], lr=0.01)
    m = np.zeros(5); v = np.zeros(5); beta1, beta2 = 0.9, 0.999
    for step in range(1, 11):
        g = rng.standard_normal(5)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - 0.01 * (m / (1 - beta1 ** step) + v / (1 - beta2 ** step))
        t.grad = torch.tensor(g); opt.step()
    assert np.abs(p - t.detach().numpy()).max() > 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError):
        SGD([np.zeros(2)], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError):
        Adam([np.zeros(2)], lr=-1.0)
    with pytest.raises(ValueError):
        SGD([np.zeros(2)], lr=0.1).step([np.zeros(3)])
    with pytest.raises(ValueError):
        RMSprop([np.zeros(2)], lr=0.1, alpha=1.0)
    with pytest.raises(ValueError):
        Adagrad([np.zeros(2)], lr=0.1, lr_decay=-0.1)


def torch_rates(make_scheduler, n, lr=0.05):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched, rates = make_scheduler(opt), []
    for _ in range(n):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(rates)


@pytest.mark.parametrize("warmup,total,start,eta_min", [(10, 60, 0.1, 1e-3), (1, 30, 0.5, 0.0), (0, 40, 0.1, 0.01)])
def test_warmup_cosine_matches_torch(warmup, total, start, eta_min):
    S = torch.optim.lr_scheduler
    if warmup:
        make = lambda opt: S.SequentialLR(opt, [S.LinearLR(opt, start_factor=start, total_iters=warmup),
                                                S.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=eta_min)],
                                          milestones=[warmup])
    else:
        make = lambda opt: S.CosineAnnealingLR(opt, T_max=total, eta_min=eta_min)
    n = total + 15   # past total_steps too: torch's cosine rises again, and so does ours
    ours = np.array([warmup_cosine_lr(k, 0.05, warmup, total, start_factor=start, eta_min=eta_min) for k in range(n)])
    assert np.abs(ours - torch_rates(make, n)).max() < 1e-15


@pytest.mark.parametrize("step_size,gamma", [(20, 0.5), (7, 0.1), (1, 0.9)])
def test_step_decay_matches_torch(step_size, gamma):
    make = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    ours = np.array([step_decay_lr(k, 0.05, step_size, gamma) for k in range(60)])
    ref = torch_rates(make, 60)
    assert np.abs(ours - ref).max() <= 1e-12 * np.abs(ref).max()


def test_schedule_arguments():
    with pytest.raises(ValueError):
        warmup_cosine_lr(0, 0.1, 10, 10)
    with pytest.raises(ValueError):
        step_decay_lr(0, 0.1, 0)
