"""GradCache (Gao et al., 2021): the gradient of a loss that needs the whole batch's representations, in memory
that does not grow with the batch.

1. Representations of every input stream in chunks, without keeping activations (forward only).
2. The loss and its gradient with respect to the representations, on the full global batch.
3. Chunk by chunk, the encoder is run again and its vector-Jacobian product with that chunk's representation
   gradient is accumulated into the parameter gradient (lax.scan: one chunk's activations alive at a time).

The result equals the plain gradient exactly in exact arithmetic, provided each chunk's forward is deterministic
(dropout keys are derived from the chunk index, so steps 1 and 3 see the same masks).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Encode = Callable[[Any, str, dict[str, jax.Array], jax.Array | None], jax.Array]


def _chunks(x: jax.Array, size: int) -> jax.Array:
    if x.shape[0] % size:
        raise ValueError(f"{x.shape[0]} rows are not divisible by the grad-cache chunk {size}")
    return x.reshape(x.shape[0] // size, size, *x.shape[1:])


def grad_cache_value_and_grad(encode: Encode, loss_from_reps: Callable[[dict[str, jax.Array]], tuple],
                              params: Any, streams: dict[str, dict[str, jax.Array]], chunk: int,
                              key: jax.Array | None = None) -> tuple[tuple, Any]:
    """encode(params, stream name, inputs chunk {name: [chunk, ...]}, key) → representations (an array or a
    pytree of float arrays, leading dim chunk);
    streams: {name: {input name: [N, ...]}}; loss_from_reps(reps) → (loss, aux). Returns ((loss, aux), grads)."""
    keys = {name: None if key is None else jax.random.fold_in(key, i) for i, name in enumerate(streams)}
    chunked = {name: {k: _chunks(v, chunk) for k, v in inputs.items()} for name, inputs in streams.items()}

    def chunk_key(name, index):
        return None if keys[name] is None else jax.random.fold_in(keys[name], index)

    def forward(name):
        n = next(iter(chunked[name].values())).shape[0]
        reps = jax.lax.map(lambda args: encode(jax.lax.stop_gradient(params), name, args[0], chunk_key(name, args[1])),
                           (chunked[name], jnp.arange(n)))
        return jax.tree.map(lambda r: r.reshape(n * chunk, *r.shape[2:]), reps)

    if all(next(iter(c.values())).shape[0] == 1 for c in chunked.values()):
        # The whole batch is one chunk: caching would only add a forward pass. Same keys as the chunked path.
        def whole(p):
            return loss_from_reps({name: encode(p, name, inputs, chunk_key(name, 0))
                                   for name, inputs in streams.items()})
        return jax.value_and_grad(whole, has_aux=True)(params)

    reps = {name: forward(name) for name in streams}
    (loss, aux), rep_grads = jax.value_and_grad(loss_from_reps, has_aux=True)(reps)

    grads = jax.tree.map(jnp.zeros_like, params)
    for name in streams:
        n = next(iter(chunked[name].values())).shape[0]
        g_chunks = jax.tree.map(lambda g: _chunks(g, chunk), rep_grads[name])

        def body(acc, args, name=name):
            inputs, g, index = args
            _, vjp = jax.vjp(lambda p: encode(p, name, inputs, chunk_key(name, index)), params)
            (gp,) = vjp(g)
            return jax.tree.map(jnp.add, acc, gp), None

        grads, _ = jax.lax.scan(body, grads, (chunked[name], g_chunks, jnp.arange(n)))
    return (loss, aux), grads
