"""GradCache gives the plain gradient: chunked forward without activations, the loss's gradient on the whole batch's
representations, then per-chunk vector-Jacobian products, on a toy encoder with the batch in several chunks or one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.train.grad_cache import grad_cache_value_and_grad


@pytest.mark.parametrize("chunk", [2, 4, 8], ids=["4chunks", "2chunks", "one_chunk"])
def test_grad_cache_function_equals_autodiff(chunk):
    """grad_cache_value_and_grad on a toy encoder and loss, with the batch in several chunks or in one (where it
    skips the caching pass), against jax.value_and_grad of the whole thing."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}
    streams = {"q": {"x": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)},
               "d": {"x": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)}}

    def encode(p, name, inputs, key):
        return jnp.tanh(inputs["x"] @ p["w"])

    def loss_from_reps(reps):
        scores = reps["q"] @ reps["d"].T
        return jnp.mean(jax.nn.logsumexp(scores, axis=1) - jnp.diag(scores)), {}

    (loss, _), grads = grad_cache_value_and_grad(encode, loss_from_reps, params, streams, chunk)
    ref_loss, ref_grads = jax.value_and_grad(
        lambda p: loss_from_reps({n: encode(p, n, s, None) for n, s in streams.items()})[0])(params)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(grads["w"], ref_grads["w"], atol=1e-6)
