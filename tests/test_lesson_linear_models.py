"""aicourse.lessons.linear_models (notebook 02) against torch and scikit-learn, without running the notebook."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression, LogisticRegression

from aicourse.lessons.linear_models import (add_bias_column, fit_softmax_regression, gd_linear_regression,
                                            linear_regression_loss, normal_equations, softmax_regression_loss)


@pytest.fixture
def regression():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 4.0 + 0.1 * rng.standard_normal(50)
    return X, y, rng


def test_add_bias_column():
    assert np.array_equal(add_bias_column(np.zeros((3, 2))), np.array([[0, 0, 1.0]] * 3))


def test_mse_loss_and_gradients_match_autograd(regression):
    X, y, rng = regression
    w, b = rng.standard_normal(4), 0.3
    loss, dw, db = linear_regression_loss(X, y, w, b)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, dtype=torch.float64, requires_grad=True)
    lt = F.mse_loss(torch.from_numpy(X) @ wt + bt, torch.from_numpy(y))
    lt.backward()
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(db, bt.grad.item(), rtol=1e-12)


def test_normal_equations_and_gradient_descent_agree_with_sklearn(regression):
    X, y, _ = regression
    w, b = normal_equations(X, y)
    sk = LinearRegression().fit(X, y)
    np.testing.assert_allclose(w, sk.coef_, rtol=1e-10)
    np.testing.assert_allclose(b, sk.intercept_, rtol=1e-10)
    w_gd, b_gd, losses = gd_linear_regression(X, y)
    np.testing.assert_allclose(w_gd, w, rtol=1e-8)
    np.testing.assert_allclose(b_gd, b, rtol=1e-8)
    assert np.all(np.diff(losses) <= 1e-12)          # eta = 1/lambda_max: the loss never rises


def test_softmax_regression_loss_matches_torch():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((30, 5)), rng.integers(0, 4, 30)
    W, b, lam = rng.standard_normal((4, 5)), rng.standard_normal(4), 0.07
    loss, dW, db = softmax_regression_loss(X, y, W, b, lam)
    Wt, bt = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    lt = F.cross_entropy(torch.from_numpy(X) @ Wt.T + bt, torch.from_numpy(y)) + lam / 2 * (Wt ** 2).sum()
    lt.backward()
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_fit_softmax_regression_matches_sklearn():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((120, 3))
    y = np.argmax(X @ rng.standard_normal((3, 3)) + 0.5 * rng.standard_normal((120, 3)), axis=1)
    C = 0.5
    W, b, _ = fit_softmax_regression(X, y, 3, lam=1 / (C * len(y)))
    sk = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(W, sk.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, sk.intercept_, rtol=1e-5, atol=1e-6)
