"""The autodiff engine on small hand-computed cases: exact values, errors, graph bookkeeping."""
import warnings
import math

import numpy as np
import pytest

import scratchgen as sg
import scratchgen.functional as F
from scratchgen.ops import linalg


def t64(x, requires_grad=True):
    return sg.tensor(np.asarray(x, dtype=np.float64), requires_grad=requires_grad)


def npy(t):
    return t.numpy()


# ---- broadcasting and accumulation -------------------------------------------------------
def test_broadcast_gradients_are_summed_back_to_each_shape():
    a = t64([[1.0], [2.0], [3.0]])        # (3, 1)
    b = t64([[1.0, 2.0, 3.0, 4.0]])       # (1, 4)
    (a + b).sum().backward()
    np.testing.assert_array_equal(npy(a.grad), [[4.0], [4.0], [4.0]])
    np.testing.assert_array_equal(npy(b.grad), [[3.0, 3.0, 3.0, 3.0]])

    a.grad = b.grad = None
    (a * b).sum().backward()              # d/da_i = sum_j b_j, d/db_j = sum_i a_i
    np.testing.assert_array_equal(npy(a.grad), [[10.0], [10.0], [10.0]])
    np.testing.assert_array_equal(npy(b.grad), [[6.0, 6.0, 6.0, 6.0]])

    c = t64([1.0, -1.0, 2.0, 0.5])        # (4,): a rank difference
    s = t64(3.0)                          # 0-d
    ((a * c) * s).sum().backward()
    np.testing.assert_array_equal(npy(c.grad), [18.0] * 4)  # s * sum_i a_i
    assert s.grad.shape == () and s.grad.item() == pytest.approx(6.0 * 2.5)


def test_gradient_accumulates_over_uses_and_calls():
    x = t64([1.0, -2.0, 0.5])
    (x * x + x).sum().backward()          # 2x + 1
    np.testing.assert_array_equal(npy(x.grad), [3.0, -3.0, 2.0])
    (x * x + x).sum().backward()          # a second backward adds to .grad
    np.testing.assert_array_equal(npy(x.grad), [6.0, -6.0, 4.0])
    y = x * 3.0
    (y * y).sum().backward()              # one intermediate used twice: 18x
    np.testing.assert_array_equal(npy(x.grad), [24.0, -42.0, 13.0])


def test_summed_gradients_are_new_arrays_with_or_without_a_graph():
    # add's VJP hands g on unchanged, so two paths meeting at a tensor must be summed into a
    # new array (the sweep adds raw arrays when nothing records): editing one leaf's .grad in
    # place must leave the others' alone, and a create_graph sweep must agree.
    for create_graph in (False, True):
        a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
        y = a + b
        (y + a + b + b).sum().backward(create_graph=create_graph)
        np.testing.assert_array_equal(npy(a.grad), [2.0, 2.0])
        np.testing.assert_array_equal(npy(b.grad), [3.0, 3.0])
        assert a.grad.array is not b.grad.array
        a.grad.array[...] = 0.0
        np.testing.assert_array_equal(npy(b.grad), [3.0, 3.0])


def test_ten_thousand_op_chain_backprops_without_recursion():
    x = t64([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 10_000, rel=1e-12)

    # second order through a 10,000-deep graph of tanh: y_{k+1} = tanh(y_k)
    x = t64([0.8])
    y = x
    for _ in range(10_000):
        y = F.tanh(y)
    (g,) = sg.grad(y.sum(), x, create_graph=True)
    (g2,) = sg.grad(g.sum(), x)

    def dydx(x0):  # prod_k (1 - y_{k+1}^2)
        v, d = x0, 1.0
        for _ in range(10_000):
            v = math.tanh(v)
            d *= 1 - v * v
        return d

    assert g.item() == pytest.approx(dydx(0.8), rel=1e-10)
    assert g2.item() == pytest.approx((dydx(0.8 + 1e-6) - dydx(0.8 - 1e-6)) / 2e-6, rel=1e-5)


# ---- backward() and sg.grad --------------------------------------------------------------
def test_backward_on_non_scalar_needs_a_gradient():
    x = t64(np.ones((2, 3)))
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"scalar output; got shape \(2, 3\)"):
        y.backward()
    y.backward(grad=t64(np.full((2, 3), 0.5), requires_grad=False))
    np.testing.assert_array_equal(npy(x.grad), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"grad has shape \(3,\) but the output has shape \(2, 3"):
        (x * 2.0).backward(grad=np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        t64([1.0], requires_grad=False).sum().backward()


def test_grad_returns_a_tuple_like_torch_autograd_grad():
    x, y = t64([1.0, 2.0]), t64([3.0, -1.0])
    out = (x * y).sum()
    gs = sg.grad(out, (x, y))
    assert isinstance(gs, tuple) and len(gs) == 2
    np.testing.assert_array_equal(npy(gs[0]), [3.0, -1.0])
    np.testing.assert_array_equal(npy(gs[1]), [1.0, 2.0])
    assert not gs[0].requires_grad and x.grad is None and y.grad is None  # leaves untouched

    g1 = sg.grad((x * x).sum(), x)   # a single input still gives a 1-tuple
    assert isinstance(g1, tuple) and len(g1) == 1
    np.testing.assert_array_equal(npy(g1[0]), [2.0, 4.0])


def test_grad_allow_unused():
    x, unused = t64([1.0, 2.0]), t64([5.0])
    with pytest.raises(RuntimeError, match=r"input 1 \(shape \(1,\)\) was not used"):
        sg.grad((x * x).sum(), [x, unused])
    gx, gu = sg.grad((x * x).sum(), [x, unused], allow_unused=True)
    np.testing.assert_array_equal(npy(gx), [2.0, 4.0])
    assert gu is None


def test_grad_outputs_weight_each_output():
    x = t64([1.0, 2.0, 3.0])
    (g,) = sg.grad(x * x, x, grad_outputs=t64([1.0, 0.0, -2.0], requires_grad=False))
    np.testing.assert_array_equal(npy(g), [2.0, 0.0, -12.0])        # v * 2x
    (g,) = sg.grad([x * x, x * 3.0], x, grad_outputs=[np.ones(3), np.full(3, 2.0)])
    np.testing.assert_array_equal(npy(g), [8.0, 10.0, 12.0])        # 2x + 6
    with pytest.raises(RuntimeError, match=r"shape \(3,\): grad_outputs is needed"):
        sg.grad(x * x, x)
    with pytest.raises(ValueError, match="got 1 grad_outputs for 2 outputs"):
        sg.grad([x * x, x], x, grad_outputs=[np.ones(3)])


def test_create_graph_gives_the_third_derivative_of_x_to_the_fourth():
    x = t64(2.0)
    (g1,) = sg.grad(x ** 4, x, create_graph=True)
    (g2,) = sg.grad(g1, x, create_graph=True)
    (g3,) = sg.grad(g2, x)
    assert (g1.item(), g2.item(), g3.item()) == (32.0, 48.0, 48.0)  # 4x^3, 12x^2, 24x
    assert g1.requires_grad and g2.requires_grad and not g3.requires_grad


def test_retain_graph():
    x = t64([1.0, -3.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="through the graph a second time.*retain_graph=True"):
        y.backward()

    x.grad = None
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(npy(x.grad), [4.0, -12.0])        # 2 * 2x, accumulated
    y2 = (x * x).sum()
    sg.grad(y2, x, retain_graph=True)
    np.testing.assert_array_equal(npy(sg.grad(y2, x)[0]), [2.0, -6.0])
    with pytest.raises(RuntimeError, match="second time"):
        sg.grad(y2, x)


def test_no_grad_builds_nothing():
    x = t64([1.0, 2.0])
    with sg.no_grad():
        assert not sg.is_grad_enabled()
        y = x * 2.0 + 1.0
        with sg.enable_grad():
            z = x * 2.0
    assert sg.is_grad_enabled()
    assert not y.requires_grad and y._node is None and y.is_leaf
    assert z.requires_grad and z._node is not None

    @sg.no_grad()
    def f(a):
        return F.exp(a)

    r = f(x)
    assert not r.requires_grad and r._node is None
    with pytest.raises(ZeroDivisionError):
        with sg.no_grad():
            1 / 0
    assert sg.is_grad_enabled()                                  # restored after an error


# ---- dtypes ------------------------------------------------------------------------------
def test_dtype_rules():
    assert sg.tensor(1.5).dtype == np.float32
    assert sg.tensor([1, 2]).dtype == np.float32
    assert sg.tensor([[0.5, 1.5]]).dtype == np.float32
    x = sg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert x.dtype == np.float64
    y = (x * 2.0 + 1) / 3.0 - F.exp(x) ** 0.5
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float64
    x32 = sg.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    (x32 * 2.0 + 1.0).sum().backward()
    assert (x32 * 2.0).dtype == np.float32 and x32.grad.dtype == np.float32
    with pytest.raises(TypeError, match="int64"):
        sg.tensor(np.array([1, 2], np.int64), requires_grad=True)
    with pytest.raises(TypeError, match="int32"):
        sg.tensor(np.array([1, 2], np.int32)).requires_grad_()


def test_cast_sends_the_gradient_back_in_the_input_dtype():
    x = t64([1.5, -2.0])
    y = x.float()
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(npy(x.grad), [3.0, -4.0])


def test_zero_dim_float32_through_masked_vjps():
    """relu/abs/maximum/where VJPs build masks from 0-d arrays (NumPy returns scalars)."""
    x = sg.tensor(np.float32(-1.5), requires_grad=True)
    y = sg.tensor(np.float32(0.5), requires_grad=True)
    out = F.relu(y) + F.abs(x) + F.maximum(x, y) + F.where(x > 0, x, y * 2.0)
    out.backward()
    assert x.grad.dtype == np.float32 and y.grad.dtype == np.float32
    assert (x.grad.item(), y.grad.item()) == (-1.0, 4.0)


def test_comparisons_are_not_differentiable():
    x = t64([-1.0, 0.0, 2.0])
    for c in (x < 0, x <= 0, x > 0, x >= 0, x == 0, x != 0, x > t64([0.0, 0.0, 3.0])):
        assert c.dtype == np.bool_ and not c.requires_grad and c._node is None
    np.testing.assert_array_equal(npy(x > 0), [False, False, True])
    F.where(x > 0, x * 5.0, x * 2.0).sum().backward()
    np.testing.assert_array_equal(npy(x.grad), [2.0, 2.0, 5.0])


# ---- indexing ----------------------------------------------------------------------------
def test_index_gradients():
    x = t64([10.0, 20.0, 30.0, 40.0])
    (x[[0, 0, 2, 0]] * t64([1.0, 2.0, 3.0, 4.0], False)).sum().backward()
    np.testing.assert_array_equal(npy(x.grad), [7.0, 0.0, 3.0, 0.0])   # repeats accumulate

    m = t64(np.arange(12.0).reshape(3, 4))
    m[[0, 0, 2], [1, 1, 3]].sum().backward()
    expected = np.zeros((3, 4))
    expected[0, 1], expected[2, 3] = 2.0, 1.0
    np.testing.assert_array_equal(npy(m.grad), expected)

    m.grad = None
    y = m[1:, ::-2]                                                      # (2, 2): cols 3, 1
    np.testing.assert_array_equal(npy(y), [[7.0, 5.0], [11.0, 9.0]])
    (y * t64([[1.0, 2.0], [3.0, 4.0]], False)).sum().backward()
    np.testing.assert_array_equal(npy(m.grad), [[0, 0, 0, 0], [0, 2, 0, 1], [0, 4, 0, 3]])

    m.grad = None
    m[None, 2, ..., -1].sum().backward()
    assert npy(m.grad)[2, 3] == 1.0 and npy(m.grad).sum() == 1.0


# ---- error messages ------------------------------------------------------------------------
def test_matmul_shape_mismatch_names_both_shapes():
    a, b = t64(np.ones((2, 3))), t64(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(a, b)


def test_conv_channel_mismatch_names_both_shapes():
    x, w = t64(np.ones((1, 3, 5, 5))), t64(np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"\(1, 3, 5, 5\).*\(4, 2, 3, 3\)"):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match=r"\(1, 3, 5, 5\).*\(4, 2, 3, 3\)"):
        F.conv_transpose2d(x, w)


# ---- numerically delicate ops ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_exact_at_large_logits(dtype):
    logits = sg.tensor(np.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype), requires_grad=True)
    target = sg.tensor(np.array([1.0, 1.0, 0.0, 0.0, 0.25], dtype))
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert loss.dtype == dtype
    np.testing.assert_allclose(npy(loss), [0.0, 1e4, 1e4, 0.0, math.log(2.0)], rtol=1e-6)
    loss.sum().backward()                                     # sigmoid(l) - t
    assert logits.grad.dtype == dtype
    np.testing.assert_allclose(npy(logits.grad), [0.0, -1.0, 1.0, 0.0, 0.25], atol=1e-7)
    mean = F.binary_cross_entropy_with_logits(logits, target)
    assert mean.item() == pytest.approx((2e4 + math.log(2.0)) / 5, rel=1e-6)


def test_max_ties_share_the_gradient_equally():
    x = t64([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(npy(x.grad), [[0, 0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0]])
    x.grad = None
    x.max().backward()                                        # three-way tie at 5
    np.testing.assert_allclose(npy(x.grad), [[0, 0, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0]])
    x.grad = None
    x.min(axis=0, keepdims=True).sum().backward()
    np.testing.assert_allclose(npy(x.grad), [[1, 1, 1, 0], [0, 0, 0, 1]])
    a, b = t64([1.0, 2.0]), t64([1.0, 3.0])
    (F.maximum(a, b) * t64([2.0, 2.0], False)).sum().backward()
    np.testing.assert_array_equal(npy(a.grad), [1.0, 0.0])
    np.testing.assert_array_equal(npy(b.grad), [1.0, 2.0])


def test_logsumexp_is_stable_at_large_values_and_minus_infinity():
    x = t64([1e4, 1e4, -np.inf])
    y = F.logsumexp(x)
    assert y.item() == pytest.approx(1e4 + math.log(2.0), rel=1e-15)
    y.backward()                                  # softmax; exp(x - lse) to ulp(1e4) / 1e4
    np.testing.assert_allclose(npy(x.grad), [0.5, 0.5, 0.0], rtol=1e-12, atol=0)

    x = t64([[0.0, -np.inf], [-1e4, -1e4]])
    y = F.logsumexp(x, axis=1, keepdims=True)
    np.testing.assert_allclose(npy(y), [[0.0], [-1e4 + math.log(2.0)]], rtol=1e-15)
    y.sum().backward()
    np.testing.assert_allclose(npy(x.grad), [[1.0, 0.0], [0.5, 0.5]], rtol=1e-12, atol=0)
    with np.errstate(divide="ignore"):
        assert F.logsumexp(t64([-np.inf, -np.inf])).item() == -np.inf


# ---- the gradient checker itself can fail --------------------------------------------------
def test_gradcheck_catches_wrong_first_and_second_derivatives():
    bad = sg.primitive(lambda a: a * a)
    bad.defvjp(lambda g, ans, a: g * a * 2.1)                 # wrong factor
    with pytest.raises(sg.GradcheckError, match="first-order gradient of input 0"):
        sg.gradcheck(bad, t64([0.5, -1.0]))

    flat = sg.primitive(lambda a: a * a)
    flat.defvjp(lambda g, ans, a: g * (2.0 * a.array))        # right value, on raw data
    x = t64([0.5, -1.0])
    assert sg.gradcheck(flat, x)
    with pytest.raises(sg.GradcheckError, match="second-order"):
        sg.gradgradcheck(flat, x)


def test_numeric_grad_is_the_central_difference_of_a_scalar_function():
    x = sg.tensor(np.array([0.5, -1.0], np.float32))          # float32 in: float64 copies used
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    gx, gw = sg.numeric_grad(lambda a, b: ((a ** 3) * b).sum(), [x, w])
    assert gx.dtype == gw.dtype == np.float64 and x.dtype == np.float32
    np.testing.assert_allclose(gx, 3 * np.array([0.5, -1.0]) ** 2 * w.sum(0), rtol=1e-8)
    np.testing.assert_allclose(gw, np.broadcast_to(np.array([0.5, -1.0]) ** 3, (2, 2)),
                               rtol=1e-8)
    np.testing.assert_array_equal(x.numpy(), [0.5, -1.0])     # inputs untouched
    with pytest.raises(ValueError, match="scalar function"):
        sg.numeric_grad(lambda a: a * 2, x)


def test_gradcheck_comparison_returns_both_values():
    from scratchgen.autograd.gradcheck import compare_gradients
    x, y = t64([0.3, -0.7]), t64([1.5], requires_grad=False)
    c = compare_gradients(lambda a, b: a * a * b, [x, y], seed=3)
    v = np.random.default_rng(3).standard_normal(2)           # gradcheck's fixed projection
    assert c.order == "first" and c.positions == (0,)
    np.testing.assert_allclose(c.analytic[0], v * 2 * np.array([0.3, -0.7]) * 1.5, rtol=1e-12)
    np.testing.assert_allclose(c.numerical[0], c.analytic[0], rtol=1e-7)
    assert c.errors()[1] < 1e-8
    c2 = compare_gradients(lambda a: a ** 3, x, order=2)
    assert c2.order == "second" and c2.positions == (0, 1)    # the input and its projection v
    assert c2.errors()[1] < 1e-7 and c2.check()
    with pytest.raises(ValueError, match="C-contiguous"):
        sg.gradcheck(lambda a: a * a, sg.tensor(np.ones((2, 3)).T, requires_grad=True))


# ---- WGAN-GP: gradients of a gradient penalty ---------------------------------------------
def _mlp_params(rng, sizes):
    ps = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        ps += [t64(rng.standard_normal((o, i)) / math.sqrt(i)), t64(0.1 * rng.standard_normal(o))]
    return ps


def _mlp(x, ps):
    h = x
    for k in range(0, len(ps) - 2, 2):
        h = F.relu(F.linear(h, ps[k], ps[k + 1]))
    return F.linear(h, ps[-2], ps[-1])


def _penalty(critic, x, ps):
    """mean_i (||d critic(x_i) / d x_i|| - 1)^2, differentiable in the parameters."""
    (g,) = sg.grad(critic(x, ps).sum(), x, create_graph=True)
    g = F.reshape(g, (g.shape[0], -1))
    norms = (g ** 2).sum(axis=1) ** 0.5
    assert np.all(npy(norms) > 1e-3)  # the norm's gradient is singular at 0
    return ((norms - 1) ** 2).mean()


def _check_penalty_gradients(critic, x, ps):
    _penalty(critic, x, ps).backward()
    via_backward = [p.grad for p in ps]
    assert any(g is not None and np.abs(npy(g)).max() > 1e-3 for g in via_backward)
    via_grad = sg.grad(_penalty(critic, x, ps), ps, allow_unused=True)
    for gb, gg in zip(via_backward, via_grad):
        assert (gb is None) == (gg is None)
        if gb is not None:
            np.testing.assert_allclose(npy(gb), npy(gg), rtol=1e-12, atol=1e-14)
    assert sg.gradcheck(lambda *p: _penalty(critic, x, p), ps)


def test_wgan_gp_mlp_critic_parameter_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    ps = _mlp_params(rng, [3, 8, 8, 1])
    x = t64(rng.standard_normal((5, 3)))
    _check_penalty_gradients(_mlp, x, ps)


def _conv_critic(x, ps):
    w1, b1, w2, b2, w3, b3 = ps
    h = F.leaky_relu(F.conv2d(x, w1, b1, stride=2, padding=1), 0.2)
    h = F.leaky_relu(F.conv2d(h, w2, b2, stride=1, padding=0), 0.2)
    return F.linear(F.flatten(h), w3, b3)


def test_wgan_gp_conv_critic_parameter_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    ps = [t64(0.5 * rng.standard_normal((3, 1, 3, 3))), t64(0.1 * rng.standard_normal(3)),
          t64(0.3 * rng.standard_normal((2, 3, 2, 2))), t64(0.1 * rng.standard_normal(2)),
          t64(0.5 * rng.standard_normal((1, 8))), t64(0.1 * rng.standard_normal(1))]
    x = t64(rng.standard_normal((2, 1, 5, 5)))                # -> (2,3,3,3) -> (2,2,2,2) -> 8
    _check_penalty_gradients(_conv_critic, x, ps)


def test_relu_double_backward_does_no_dead_matmul_work(monkeypatch):
    """Count ``_matmul`` calls in one WGAN-GP critic step of a ReLU MLP with L = 3 linear layers
    (two hidden). ``linear``'s forward is its own primitive (no ``_matmul``); its VJPs are one
    ``_matmul`` each: dx = g W, dW = g^T x. ReLU's VJP multiplies by a constant mask, so the
    gradient graph g(x) = ((1 W3) * m2) W2 * m1) W1 contains only the W's.

    * forward D(real), D(fake), D(x_hat): 0;
    * g = d sum D(x_hat) / d x_hat, only the input path: dx of layers 3, 2, 1 = L = 3;
    * loss = D(fake).mean() - D(real).mean() + 10 gp: backward
      - each of D(real), D(fake): dW for 3 layers + dx for layers 3, 2 (x needs none) = 2L - 1
      - through g's graph: each of g's L matmuls a W_k has two operands; the first (1 W3) has a
        constant left operand, so 2L - 1 (no path reaches the forward activations or biases);
    total 3 + 3 * 5 = 18. More would mean the double backward redoes forward-graph work.
    """
    rng = np.random.default_rng(2)
    ps = _mlp_params(rng, [3, 16, 16, 1])
    real, fake = t64(rng.standard_normal((8, 3)), False), t64(rng.standard_normal((8, 3)), False)
    alpha = t64(rng.uniform(size=(8, 1)), False)
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_()

    calls = []
    fwd = linalg._matmul.fwd
    monkeypatch.setattr(linalg._matmul, "fwd", lambda a, b: calls.append(1) or fwd(a, b))
    out = _mlp(x_hat, ps)
    assert len(calls) == 0
    (g,) = sg.grad(out.sum(), x_hat, create_graph=True)
    assert len(calls) == 3
    gp = ((g ** 2).sum(axis=1) ** 0.5 - 1) ** 2
    loss = _mlp(fake, ps).mean() - _mlp(real, ps).mean() + 10.0 * gp.mean()
    loss.backward()
    assert len(calls) == 18
    assert x_hat.grad is None                       # the penalty's graph holds only the W's
    assert all(np.isfinite(npy(p.grad)).all() for p in ps)


# ---- backend selection ---------------------------------------------------------------------
def test_leaf_grads_are_private_writable_arrays():
    """Two leaves fed the same upstream gradient (add) must not share one .grad array, and a
    broadcast gradient must not be a read-only view: in-place clipping of .grad is common."""
    a = sg.tensor(np.ones(3), requires_grad=True)
    b = sg.tensor(np.ones(3), requires_grad=True)
    c = sg.tensor(np.ones(1), requires_grad=True)
    (a + b + c).sum().backward()
    a.grad.array *= 0.5
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3))
    w = sg.tensor(np.ones((2, 3)), requires_grad=True)
    sg.functional.broadcast_to(w.sum(), (4,)).sum().backward()
    w.grad.array *= 2.0
    np.testing.assert_array_equal(w.grad.numpy(), np.full((2, 3), 8.0))


def test_unary_methods_bind_like_pytorch():
    x = sg.tensor(np.array([0.5, 2.0]))
    for name in ("exp", "log", "sqrt", "abs", "sigmoid", "tanh", "relu", "softplus"):
        np.testing.assert_allclose(getattr(x, name)().numpy(),
                                   getattr(sg.functional, name)(x).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_extremes_are_exact_limits_without_warnings(dtype):
    x = sg.tensor(np.array([-1e4, -30.0, 0.0, 30.0, 1e4], dtype=dtype), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sg.functional.sigmoid(x)
        s.sum().backward()
    from scipy.special import expit
    expected = expit(np.array([-1e4, -30.0, 0.0, 30.0, 1e4], dtype=dtype))
    np.testing.assert_allclose(s.numpy(), expected, rtol=1e-6, atol=0)
    assert np.all(np.isfinite(x.grad.numpy()))


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0, 1.5, -0.5])
def test_leaky_relu_any_slope(slope):
    a = np.array([-2.0, -0.5, 0.5, 3.0])
    x = sg.tensor(a, requires_grad=True)
    y = sg.functional.leaky_relu(x, slope)
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), np.where(a > 0, a, slope * a))
    np.testing.assert_allclose(x.grad.numpy(), np.where(a > 0, 1.0, slope))


def test_pow_zero_and_one_at_zero_are_exact_and_the_mixed_derivative_stays_1_over_a():
    x = t64([0.0, 0.0, 2.0])
    (g0,) = sg.grad((x ** 0).sum(), x)
    np.testing.assert_array_equal(g0.numpy(), [0.0, 0.0, 0.0])
    (g1,) = sg.grad((x ** 1).sum(), x, create_graph=True)
    np.testing.assert_array_equal(g1.numpy(), [1.0, 1.0, 1.0])
    assert not g1.requires_grad                                # constant: d2/dx2 x = 0, no NaN
    a, b = t64([0.0, 2.0, 0.25]), t64([0.0, 0.0, 0.0])
    (ga,) = sg.grad((a ** b).sum(), a, create_graph=True)
    np.testing.assert_array_equal(ga.numpy(), [0.0, 0.0, 0.0])
    gaa, gab = sg.grad(ga.sum(), [a, b])
    np.testing.assert_array_equal(gaa.numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(gab.numpy()[1:], [0.5, 4.0])  # d/db d/da a^b = 1/a at b = 0
    (gb,) = sg.grad((a ** b).sum(), b)                          # 0^b log 0 -> 0 at a = 0
    np.testing.assert_allclose(gb.numpy(), [0.0, np.log(2.0), np.log(0.25)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_logsumexp_and_log_softmax_shift_by_the_max_forward_and_backward(dtype):
    x = sg.tensor(np.array([1e8, 1e8], dtype), requires_grad=True)
    np.testing.assert_array_equal(F.softmax(x, dim=0).numpy(), [0.5, 0.5])
    F.logsumexp(x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.5, 0.5])
    y = F.log_softmax(sg.tensor(np.array([1e5, 1e5 + 1], dtype)), dim=-1)
    expected = -np.log1p(np.exp(-1.0)) - np.array([1.0, 0.0])   # [-1.31326, -0.31326]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)
    x = sg.tensor(np.array([[1e5, 1e5 + 1, 1e5 - 2]], dtype), requires_grad=True)
    (g,) = sg.grad(F.softmax(x, dim=1)[0, 0], x)               # d s_0 = s_0 (e_0 - s)
    s = np.exp(np.array([-1.0, 0.0, -3.0]) - np.log(np.exp([-1.0, 0.0, -3.0]).sum()))
    np.testing.assert_allclose(g.numpy()[0], s[0] * (np.eye(3)[0] - s), rtol=1e-5, atol=1e-7)


def test_foreign_kinds_are_refused_with_one_line_naming_the_kind():
    from decimal import Decimal
    from fractions import Fraction
    x = sg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    cases = [(np.array([1j, 2.0]), "complex array"), (np.complex64(1), "complex number"),
             (np.array([1.0, 2.0], dtype=object), "an object array"),
             (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "masked array"),
             (Fraction(1, 2), "Fraction"), (Decimal("0.5"), "Decimal"), (2j, "complex")]
    for other, kind in cases:
        if sg.backend.on_gpu and isinstance(other, np.ndarray):
            kind = "numpy array.*cupy arrays"  # a host array is refused first on the GPU
        for op in (lambda: x * other, lambda: other * x, lambda: x - other):
            with pytest.raises(TypeError, match=kind):
                op()
    for data, kind in (([1j], "complex array"), ([Fraction(1, 2)], "object array"),
                       (np.ma.masked_array([1.0]), "masked array")):
        with pytest.raises(TypeError, match=kind):
            sg.tensor(data)
    assert (x * np.float32(2)).dtype == np.float64 and (x ** 2 * True).requires_grad


def test_pytorch_spellings_dim_keepdim_methods_and_top_level_functions():
    a = np.arange(24.0).reshape(2, 3, 4) % 7 - 3
    x = sg.tensor(a, requires_grad=True)
    for name in ("sum", "mean", "amax", "amin", "logsumexp"):
        torch_way = getattr(x, name)(dim=1, keepdim=True)
        numpy_way = getattr(F, name)(x, axis=1, keepdims=True)
        np.testing.assert_array_equal(torch_way.numpy(), numpy_way.numpy())
        assert torch_way.shape == (2, 1, 4)
    np.testing.assert_allclose(x.var(dim=(0, 2), unbiased=True).numpy(), a.var((0, 2), ddof=1))
    # max/min: values the NumPy way; (values, indices) the PyTorch way (dim by name or position)
    np.testing.assert_array_equal(x.max(axis=2).numpy(), a.max(2))
    values, indices = x.max(dim=2)
    np.testing.assert_array_equal(values.numpy(), a.max(2))
    np.testing.assert_array_equal(indices.numpy(), a.argmax(2))
    assert x.min(1, keepdim=True).indices.shape == (2, 1, 4)
    np.testing.assert_array_equal(sg.min(x, 0).indices.numpy(), a.argmin(0))
    values.sum().backward()                                      # values stay differentiable
    assert x.grad.sum() == 6
    np.testing.assert_array_equal(sg.max(x, sg.zeros_like(x)).numpy(), np.maximum(a, 0))
    s = F.softmax(x, dim=1)
    np.testing.assert_allclose(s.numpy(), np.exp(a) / np.exp(a).sum(1, keepdims=True))
    np.testing.assert_allclose(x.log_softmax(dim=-1).numpy(), F.log_softmax(x, axis=-1).numpy())
    np.testing.assert_array_equal(sg.cat([x, x], dim=1).numpy(), np.concatenate([a, a], 1))
    np.testing.assert_array_equal(sg.stack([x, x], dim=-1).numpy(), np.stack([a, a], -1))
    with pytest.raises(TypeError, match="both dim= and axis="):
        x.sum(dim=1, axis=1)
    # methods PyTorch users reach for
    assert x.dim() == 3 and x.numel() == 24 and x.mT.shape == (2, 4, 3)
    assert x.flatten().shape == (24,) and x.flatten(1).shape == (2, 12)
    assert x.flatten(0, 1).shape == (6, 4) and sg.flatten(x, 1).shape == (2, 12)
    assert x.unsqueeze(1).shape == (2, 1, 3, 4) and x.unsqueeze(-1).shape == (2, 3, 4, 1)
    y = x.neg().square().add(1.0).sub(x).mul(2.0).div(4.0).clamp(min=0.0, max=10.0)
    np.testing.assert_allclose(y.numpy(), np.clip(((a ** 2 + 1 - a) * 2) / 4, 0, 10))
    for name in ("exp", "sqrt", "tanh", "sigmoid", "relu", "abs"):
        np.testing.assert_allclose(getattr(sg, name)(x.abs()).numpy(),
                                   getattr(F, name)(x.abs()).numpy())
    np.testing.assert_allclose(sg.matmul(x, x.mT).numpy(), a @ a.transpose(0, 2, 1))
    np.testing.assert_allclose(F.logsigmoid(x).numpy(), F.log_sigmoid(x).numpy())
    sg.manual_seed(3)
    r = sg.randn(2, 3)
    sg.manual_seed(3)
    assert r.dtype == sg.float32 and np.array_equal(r.numpy(), sg.randn((2, 3)).numpy())
    assert sg.ones(2, dtype=sg.float64).dtype == np.float64 and sg.arange(3).tolist() == [0, 1, 2]


def test_conv_bias_of_the_wrong_shape_is_a_clear_error():
    x, w = t64(np.ones((1, 2, 4, 4))), t64(np.ones((3, 2, 3, 3)))
    for b in (t64(np.ones(2)), t64(np.ones((3, 1))), np.ones(4), 1.5):
        with pytest.raises(ValueError, match=r"conv bias has shape .*expected \(3,\)"):
            F.conv2d(x, w, b)
    with pytest.raises(ValueError, match=r"conv bias has shape .*expected \(2,\)"):
        F.conv_transpose2d(t64(np.ones((1, 3, 4, 4))), w, t64(np.ones(3)))
    y = F.conv2d(x, w, t64(np.arange(3.0)), padding=1)
    np.testing.assert_array_equal(npy(y)[0, :, 0, 0], [8.0, 9.0, 10.0])
