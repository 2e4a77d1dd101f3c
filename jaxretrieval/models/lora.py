"""LoRA: a low-rank update W + (alpha / r)·A·B beside chosen linear layers, for training large encoders and LLM
rerankers with a small trainable state.

The adapted layer keeps the base layer's parameter names (`kernel`, `bias`) and adds `lora_a` / `lora_b`, so the
Hugging Face name tables, checkpoints of the base weights and `optimizer.trainable` patterns keep working.
B starts at zero: a freshly adapted model computes exactly what the base model did. Export merges the update into
the kernel (`merge_lora`), so what ships is a plain checkpoint that transformers loads without PEFT.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class LoRALinear(nnx.Module):
    """x [..., in] → x·kernel + bias + scale·(x·lora_a)·lora_b [..., out]; kernel frozen in practice."""

    def __init__(self, base: nnx.Linear, rank: int, alpha: float, rngs: nnx.Rngs):
        self.kernel = nnx.Param(base.kernel.get_value())
        self.bias = nnx.Param(base.bias.get_value()) if base.bias is not None else None
        self.dtype = base.dtype
        self.scale = alpha / rank
        fan_in, fan_out = self.kernel.shape
        self.lora_a = nnx.Param(jax.random.normal(rngs.params(), (fan_in, rank), jnp.float32) / jnp.sqrt(fan_in))
        self.lora_b = nnx.Param(jnp.zeros((rank, fan_out), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        y = x @ self.kernel.get_value().astype(dtype)
        low = (x @ self.lora_a.get_value().astype(dtype)) @ self.lora_b.get_value().astype(dtype)
        y = y + (self.scale * low).astype(dtype)
        if self.bias is not None:
            y = y + self.bias.get_value().astype(dtype)
        return y

    def merged_kernel(self) -> jax.Array:
        return self.kernel.get_value() + self.scale * (self.lora_a.get_value() @ self.lora_b.get_value())


def _children(module: nnx.Module):
    """(owner, attribute, child) for every linear layer reachable from `module`, lists included."""
    for _, node in list(nnx.iter_graph(module)):
        if isinstance(node, nnx.Module):
            for name, child in list(vars(node).items()):
                yield node, name, child


def add_lora(module: nnx.Module, rank: int, alpha: float, targets: tuple[str, ...], seed: int = 0) -> int:
    """Replace every nnx.Linear attribute named in `targets` by a LoRALinear, in place. Returns how many; zero
    is an error (a typo in the targets must not silently train nothing)."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    rngs = nnx.Rngs(seed)
    count = 0
    for owner, name, child in _children(module):
        if name in targets and isinstance(child, nnx.Linear):
            setattr(owner, name, LoRALinear(child, rank, alpha, rngs))
            count += 1
    if not count:
        raise ValueError(f"no linear layer is named any of {list(targets)}")
    return count


def merge_lora(module: nnx.Module) -> int:
    """Fold every LoRALinear back into a plain nnx.Linear with kernel + scale·A·B, in place. Returns how many."""
    count = 0
    for owner, name, child in _children(module):
        if isinstance(child, LoRALinear):
            fan_in, fan_out = child.kernel.shape
            plain = nnx.Linear(fan_in, fan_out, use_bias=child.bias is not None, dtype=child.dtype,
                               param_dtype=jnp.float32, rngs=nnx.Rngs(0))
            plain.kernel.set_value(child.merged_kernel())
            if child.bias is not None:
                plain.bias.set_value(child.bias.get_value())
            setattr(owner, name, plain)
            count += 1
    return count


def has_lora(module: nnx.Module) -> bool:
    return any(isinstance(node, LoRALinear) for _, node in nnx.iter_graph(module))
