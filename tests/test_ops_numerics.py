"""Empty and degenerate reductions follow PyTorch (issue #31, "API numerics"): nan where PyTorch
gives nan, -inf for an empty logsumexp, one clear line where PyTorch raises."""
import warnings

import numpy as np
import pytest

import scratchgen as sg
import scratchgen.functional as F


def _nan(t):
    return np.isnan(t.numpy()).all()


def test_mean_of_empty_is_nan():
    assert _nan(sg.tensor(np.zeros(0, np.float32)).mean())
    y = sg.mean(sg.tensor(np.zeros((3, 0), np.float32)), dim=1)
    assert y.shape == (3,) and _nan(y)
    assert sg.mean(sg.tensor(np.zeros((0, 3), np.float32)), dim=1).shape == (0,)


def test_var_without_degrees_of_freedom_is_nan_with_a_warning():
    with pytest.warns(UserWarning, match="degrees of freedom"):
        assert _nan(sg.tensor([2.0]).var(unbiased=True))
    with pytest.warns(UserWarning, match="degrees of freedom"):
        assert _nan(sg.tensor(np.zeros(0, np.float32)).var())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sg.tensor([2.0]).var().item() == 0.0           # biased: n = 1 is fine
        assert abs(sg.tensor([1.0, 3.0]).var(unbiased=True).item() - 2.0) < 1e-6


def test_var_gradient_of_one_element_unbiased_is_nan():
    x = sg.tensor(np.ones((2, 1)), requires_grad=True)
    with pytest.warns(UserWarning):
        v = F.var(x, axis=1, unbiased=True)
    v.sum().backward()
    assert _nan(v) and x.grad.shape == (2, 1)


def test_empty_logsumexp_is_minus_inf_and_empty_softmax_is_empty():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no NumPy RuntimeWarning either
        y = sg.logsumexp(sg.tensor(np.zeros((3, 0), np.float32)), dim=1)
        assert y.shape == (3,) and np.all(y.numpy() == -np.inf)
        assert sg.logsumexp(sg.tensor(np.zeros(0, np.float32))).item() == -np.inf
        assert sg.softmax(sg.tensor(np.zeros((2, 0), np.float32)), dim=1).shape == (2, 0)
        assert F.log_softmax(sg.tensor(np.zeros((0, 4), np.float32)), dim=1).shape == (0, 4)


def test_max_of_empty_is_one_clear_error():
    with pytest.raises(ValueError, match="empty"):
        sg.amax(sg.tensor(np.zeros((2, 0), np.float32)), dim=1)


@pytest.mark.parametrize("fn", [F.cross_entropy, lambda x, t: F.nll_loss(F.log_softmax(x, 1), t)])
def test_class_index_out_of_range_is_an_error_unless_ignored(fn):
    x = sg.tensor(np.zeros((2, 3), np.float32))
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=f"target {bad} is out of bounds"):
            fn(x, sg.tensor(np.array([0, bad])))
    assert abs(F.cross_entropy(x, sg.tensor(np.array([0, -1])), ignore_index=-1).item()
               - np.log(3)) < 1e-6
