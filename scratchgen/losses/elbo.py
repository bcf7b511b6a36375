"""The VAE's evidence lower bound, term by term, each with its gradient in closed form.

With q(z|x) = N(mu, diag exp(logvar)) and the reparameterisation z = mu + exp(logvar/2) eps,
eps ~ N(0, I):

    ELBO(x) = E_q[log p(x|z)] - beta KL(q(z|x) || N(0, I))          (<= log p(x) for beta = 1)
    IWAE_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],  z_i ~ q   (ELBO = IWAE_1 <= IWAE_k
                                                                     -> log p(x) as k grows)

Terms are per example: summed over every axis but the first. The ``*_grad`` functions give
the analytic derivatives of the per-example terms (elementwise, same shapes as the inputs);
the tests check them against autodiff and central differences.

>>> import scratchgen as sg
>>> from scratchgen.losses.elbo import kl_normal_std, kl_normal_std_grad
>>> mu, logvar = sg.tensor([[0.0, 1.0]]), sg.tensor([[0.0, 0.0]])
>>> kl_normal_std(mu, logvar).tolist()
[0.5]
>>> [g.tolist() for g in kl_normal_std_grad(mu, logvar)]
[[[0.0, 1.0]], [[0.0, 0.0]]]
"""
import math

from scratchgen import backend
from scratchgen import functional as F
from scratchgen.autograd.graph import no_grad
from scratchgen.autograd.tensor import Tensor

__all__ = ["reparameterize", "reparameterize_grad", "kl_normal_std", "kl_normal_std_grad",
           "bernoulli_nll", "bernoulli_nll_grad", "gaussian_nll", "gaussian_nll_grad",
           "log_normal", "log_standard_normal", "reconstruction_nll", "elbo", "elbo_gradients",
           "iwae_bound"]

LOG_2PI = math.log(2.0 * math.pi)


def _per_example(t):
    return F.sum(t, axis=tuple(range(1, t.ndim))) if t.ndim > 1 else t


def _reduce(t, reduction):
    if reduction == "mean":
        return F.mean(t)
    if reduction == "sum":
        return F.sum(t)
    if reduction == "none":
        return t
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_shapes(a, b, names):
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}")


def reparameterize(mu, logvar, eps):
    """z = mu + exp(logvar/2) * eps: a draw from N(mu, exp(logvar)) differentiable in
    (mu, logvar). The standard deviation is exp(logvar/2), not exp(logvar)."""
    _check_shapes(mu, logvar, ("mu", "logvar"))
    return mu + F.exp(logvar * 0.5) * eps


def reparameterize_grad(mu, logvar, eps):
    """(dz/dmu, dz/dlogvar) = (1, eps exp(logvar/2) / 2), elementwise."""
    return Tensor(backend.xp.ones_like(mu.array)), eps * F.exp(logvar * 0.5) * 0.5


def kl_normal_std(mu, logvar):
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per example
    = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j).

    dKL/dmu = mu,  dKL/dlogvar = (exp(logvar) - 1) / 2.
    """
    _check_shapes(mu, logvar, ("mu", "logvar"))
    return _per_example((mu * mu + F.exp(logvar) - 1.0 - logvar) * 0.5)


def kl_normal_std_grad(mu, logvar):
    """(dKL/dmu, dKL/dlogvar) = (mu, (exp(logvar) - 1) / 2)."""
    return mu * 1.0, (F.exp(logvar) - 1.0) * 0.5


def bernoulli_nll(logits, x):
    """-log Bernoulli(x; sigmoid(l)) per example = sum_d softplus(l_d) - x_d l_d
    (the stable logits form; x may be any value in [0, 1]).

    d/dl = sigmoid(l) - x.
    """
    _check_shapes(logits, x, ("logits", "x"))
    return _per_example(F.softplus(logits) - x * logits)


def bernoulli_nll_grad(logits, x):
    """d(-log p(x|l))/dl = sigmoid(l) - x."""
    return F.sigmoid(logits) - x


def gaussian_nll(mean, x, logvar):
    """-log N(x; mean, diag exp(logvar)) per example
    = 1/2 sum_d (log 2pi + logvar_d + (x_d - mean_d)^2 exp(-logvar_d)).

    ``logvar`` broadcasts against ``mean`` (a per-pixel parameter, or a constant).
    d/dmean = (mean - x) exp(-logvar),  d/dlogvar = (1 - (x - mean)^2 exp(-logvar)) / 2.
    """
    _check_shapes(mean, x, ("mean", "x"))
    d = x - mean
    return _per_example((d * d * F.exp(-logvar) + logvar + LOG_2PI) * 0.5)


def gaussian_nll_grad(mean, x, logvar):
    """(d/dmean, d/dlogvar), elementwise and broadcast to mean's shape:
    ((mean - x) exp(-logvar), (1 - (x - mean)^2 exp(-logvar)) / 2)."""
    d = x - mean
    inv = F.exp(-logvar)
    return -d * inv, (1.0 - d * d * inv) * 0.5


def log_normal(x, mean, logvar):
    """log N(x; mean, diag exp(logvar)) per example (summed over all but axis 0)."""
    d = x - mean
    return -_per_example((d * d * F.exp(-logvar) + logvar + LOG_2PI) * 0.5)


def log_standard_normal(z):
    """log N(z; 0, I) per example."""
    return -_per_example((z * z + LOG_2PI) * 0.5)


def reconstruction_nll(x, out, likelihood="bernoulli", x_logvar=None):
    """-log p(x|z) per example from the decoder output ``out`` (Bernoulli logits, or the
    Gaussian mean with log-variance ``x_logvar``)."""
    if likelihood == "bernoulli":
        return bernoulli_nll(out, x)
    if likelihood == "gaussian":
        if x_logvar is None:
            raise ValueError("likelihood='gaussian' needs x_logvar (the decoder's log-variance)")
        return gaussian_nll(out, x, x_logvar)
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")


def elbo(x, out, mu, logvar, likelihood="bernoulli", x_logvar=None, beta=1.0,
         reduction="mean", return_terms=False):
    """ELBO estimate log p(x|z) - beta KL(q(z|x) || p(z)) with the KL in closed form.

    ``out``: the decoder's output for z ~ q(z|x) (Bernoulli logits, or the Gaussian mean with
    log-variance ``x_logvar``), shaped like ``x``; ``mu``, ``logvar``: q's parameters (B, Z).
    ``reduction``: 'mean' | 'sum' over the batch, or 'none' (per example). With
    ``return_terms`` returns ``(elbo, nll, kl)``, each reduced the same way. The training loss
    is ``-elbo``; its gradients are in :func:`elbo_gradients`.
    """
    nll = reconstruction_nll(x, out, likelihood, x_logvar)
    kl = kl_normal_std(mu, logvar)
    value = -nll - kl * beta
    if return_terms:
        return _reduce(value, reduction), _reduce(nll, reduction), _reduce(kl, reduction)
    return _reduce(value, reduction)


def elbo_gradients(x, out, mu, logvar, eps, decoder_vjp, likelihood="bernoulli",
                   x_logvar=None, beta=1.0):
    """Closed-form gradients of the loss L = -sum_batch ELBO (``reduction='sum'``) for
    z = mu + exp(logvar/2) eps and out = decoder(z).

    ``decoder_vjp(g_out) -> g_z`` back-propagates through the decoder (for a linear decoder
    out = z W + b it is ``g @ W.T``). Chain rule through the reparameterisation:

        dL/dout     = sigmoid(out) - x                 (Bernoulli)
                    = (out - x) exp(-x_logvar)         (Gaussian)
        dL/dz       = decoder_vjp(dL/dout)
        dL/dmu      = dL/dz + beta mu
        dL/dlogvar  = dL/dz eps exp(logvar/2) / 2 + beta (exp(logvar) - 1) / 2
        dL/dx_logvar = sum over the broadcast axes of (1 - (x - out)^2 exp(-x_logvar)) / 2

    Returns a dict of tensors: 'out', 'z', 'mu', 'logvar' (and 'x_logvar' for Gaussian).
    """
    with no_grad():
        grads = {}
        if likelihood == "bernoulli":
            grads["out"] = bernoulli_nll_grad(out, x)
        elif likelihood == "gaussian":
            if x_logvar is None:
                raise ValueError("likelihood='gaussian' needs x_logvar")
            g_mean, g_lv = gaussian_nll_grad(out, x, x_logvar)
            grads["out"] = g_mean
            lv_shape = x_logvar.shape if isinstance(x_logvar, Tensor) else ()
            grads["x_logvar"] = F.sum_to(g_lv, lv_shape)
        else:
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        grads["z"] = decoder_vjp(grads["out"])
        dz_dmu, dz_dlogvar = reparameterize_grad(mu, logvar, eps)
        dkl_dmu, dkl_dlogvar = kl_normal_std_grad(mu, logvar)
        grads["mu"] = grads["z"] * dz_dmu + dkl_dmu * beta
        grads["logvar"] = grads["z"] * dz_dlogvar + dkl_dlogvar * beta
    return grads


def iwae_bound(log_joint, mu, logvar, k, rng=None, eps=None, chunk=None):
    """Importance-weighted estimate of log p(x) per example (Burda et al., 2016):

        log (1/k) sum_i w_i,  log w_i = log p(x, z_i) - log q(z_i|x),  z_i = mu + sigma eps_i,

    computed as logsumexp_i(log w_i) - log k (max-subtracted). The k samples are taken in
    chunks of ``chunk`` (default: all k); the chunks' logsumexps are combined with one more
    logsumexp, so memory is O(chunk * B) and the result equals the unchunked one.

    ``log_joint(z)``: z of shape (c, B, Z) -> log p(x, z) of shape (c, B).
    ``mu``, ``logvar``: q's parameters (B, Z). Noise: ``eps`` of shape (k, B, Z), or drawn
    chunk by chunk from the NumPy Generator ``rng`` (the same draws for any ``chunk``).
    Runs without building a graph; returns a (B,) tensor.
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if (rng is None) == (eps is None):
        raise ValueError("iwae_bound: pass exactly one of rng (a numpy Generator) or eps")
    _check_shapes(mu, logvar, ("mu", "logvar"))
    B, Z = mu.shape
    if eps is not None:
        eps_arr = eps.array if isinstance(eps, Tensor) else backend.asarray(eps)
        if eps_arr.shape != (k, B, Z):
            raise ValueError(f"eps must have shape (k, B, Z) = {(k, B, Z)}, got {eps_arr.shape}")
    chunk = k if chunk is None else max(1, min(int(chunk), k))
    with no_grad():
        sigma = F.exp(logvar * 0.5)
        # log q(z|x) at z = mu + sigma eps, from eps itself: -1/2 sum(logvar + log 2pi + eps^2).
        half_logdet = F.sum(logvar, axis=1) * 0.5
        lses = []
        for start in range(0, k, chunk):
            c = min(chunk, k - start)
            if eps is None:
                e = backend.asarray(rng.standard_normal((c, B, Z)), dtype=mu.dtype)
            else:
                e = eps_arr[start:start + c].astype(mu.dtype, copy=False)
            e = Tensor(e)
            z = mu + sigma * e                                           # (c, B, Z)
            log_q = -(F.sum(e * e, axis=2) + Z * LOG_2PI) * 0.5 - half_logdet
            log_w = log_joint(z) - log_q                                 # (c, B)
            lses.append(F.logsumexp(log_w, axis=0))
        total = F.logsumexp(F.stack(lses, axis=0), axis=0) if len(lses) > 1 else lses[0]
        return total - math.log(k)
