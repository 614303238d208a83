"""K copies of one network as one, and the vectorised Adam that steps them.

`Stack` keeps the K networks' parameters and buffers stacked along a new leading axis. On an
accelerator it runs the network once through `vmap(functional_call)`: a convolution of K stacked
weights becomes one grouped convolution, a linear layer one batched matmul, each copy's batch
norm updates its own slice of the stacked running statistics, and K trials cost the kernel
launches of one. On a CPU, which is busy with one trial's arithmetic already, it calls the network
once per member on views of the stacks instead: batched matmuls run 1.8x slower there than K
separate ones (a pack of 4 ns_gan configurations on 3x32x32, 2 cores: vmap 0.83x the speed of
trials alone; benchmarks/packed_training.py), and the rest of the pack (one Adam, one loop)
still applies. `unstack_into` copies the slices back into
the K member networks, so a member's checkpoint is that of a network trained alone.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

Tensor = torch.Tensor


class Stack:
    """K networks of one structure, called on [K, B, ...] inputs; returns [K, B, ...]."""

    def __init__(self, networks: Sequence[nn.Module], batched: Optional[bool] = None):
        """`batched`: one vmapped call (default on an accelerator) or one call per member (CPU)."""
        first = networks[0]
        self.size = len(networks)
        self.names = [name for name, _ in first.named_parameters()]
        self.buffer_names = [name for name, _ in first.named_buffers()]
        with torch.no_grad():
            self.params: Dict[str, Tensor] = {
                name: torch.stack([dict(n.named_parameters())[name].detach() for n in networks]).requires_grad_(True)
                for name in self.names}
            self.buffers: Dict[str, Tensor] = {
                name: torch.stack([dict(n.named_buffers())[name] for n in networks]).clone()
                for name in self.buffer_names}
        # The template only lends its forward: its own weights are never used.
        self.template = copy.deepcopy(first).to("meta")
        self.template.train(True)

        def call(params, buffers, x):
            return functional_call(self.template, (params, buffers), (x,))

        self._call = vmap(call)
        device = next(iter(self.params.values())).device
        self.batched = device.type != "cpu" if batched is None else batched
        # Per member: leaf views of the stacks, so each member's gradients land in tensors of their
        # own (stacking them back, as the backward of `unbind` would, copies every gradient once).
        self.members: Optional[list] = None if self.batched else [
            ({n: p[k].detach().requires_grad_(True) for n, p in self.params.items()},
             {n: b[k] for n, b in self.buffers.items()}) for k in range(self.size)]

    def __call__(self, x: Tensor) -> Tensor:
        if self.batched:
            return self._call(self.params, self.buffers, x)
        # Batch-norm statistics update the buffer views, i.e. the stacked buffers.
        return torch.stack([functional_call(self.template, member, (x[k],)) for k, member in enumerate(self.members)])

    def parameters(self) -> list:
        return [self.params[name] for name in self.names]

    def grads(self, name: str) -> list:
        """Each member's gradient of parameter `name` (None where it has none)."""
        if self.batched:
            g = self.params[name].grad
            return [None] * self.size if g is None else list(g.unbind(0))
        return [params[name].grad for params, _ in self.members]

    def stacked_grad(self, name: str) -> Optional[Tensor]:
        """The [K, ...] gradient of parameter `name` where the call was batched; else None."""
        return self.params[name].grad if self.batched else None

    def _leaves(self) -> list:
        return list(self.params.values()) + ([p for params, _ in self.members for p in params.values()]
                                             if self.members else [])

    def zero_grad(self) -> None:
        for p in self._leaves():
            p.grad = None

    def requires_grad_(self, flag: bool) -> None:
        for p in self._leaves():
            p.requires_grad_(flag)

    def snapshot_buffers(self) -> Dict[str, Tensor]:
        return {name: b.clone() for name, b in self.buffers.items()}

    def keep_buffers(self, saved: Dict[str, Tensor], keep: Tensor) -> None:
        """Members where `keep` [K] is true get their saved buffers back (a step they did not take)."""
        for name, b in self.buffers.items():
            b.copy_(torch.where(_along(keep, b), saved[name], b))

    @torch.no_grad()
    def unstack_into(self, networks: Sequence[nn.Module]) -> None:
        for k, network in enumerate(networks):
            for name, p in network.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in network.named_buffers():
                b.copy_(self.buffers[name][k])


def _along(values: Tensor, like: Tensor) -> Tensor:
    """A [K] tensor shaped to broadcast along the leading axis of `like`."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class PackedAdam:
    """Adam over stacked parameters with per-member lr and β1, as torch.optim.Adam computes it.

    Bias corrections are computed on the device in float64 from per-member step counts, so no
    step waits for the host. `step(due, mask)` updates only the members where `due[k]` is true (a GAN
    member whose schedule skips this generator step); the others keep parameters and state. A
    batched Stack's members are stepped as one: a member not due gets factors that leave its
    values exactly as they are (weight 0, β2 of 1), which costs nothing more than the step. A
    per-member Stack's members are stepped one by one on views, with their own gradients.
    """

    def __init__(self, stacks: Dict[str, Stack], optimizers: Sequence[torch.optim.Optimizer],
                 members: Sequence[Dict[str, nn.Parameter]]):
        """`stacks` by the prefix their parameter names take in a member (e.g. "encoder."); 
        `optimizers[k]` is member k's optimiser and `members[k]` its parameters by those names, so
        the state is read from and written back to them."""
        self.stacks = stacks
        self.params = {prefix + n: p for prefix, stack in stacks.items() for n, p in stack.params.items()}
        self._owner = {prefix + n: (stack, n) for prefix, stack in stacks.items() for n in stack.params}
        params = self.params
        device = next(iter(params.values())).device
        self.size = len(optimizers)
        groups = [opt.param_groups[0] for opt in optimizers]
        for opt in optimizers:
            if len(opt.param_groups) != 1:
                raise ValueError("a packed optimiser needs one parameter group per member")
        self.lr = torch.tensor([g["lr"] for g in groups], dtype=torch.float64, device=device)
        self.beta1 = torch.tensor([g["betas"][0] for g in groups], dtype=torch.float64, device=device)
        self.beta2 = torch.tensor([g["betas"][1] for g in groups], dtype=torch.float64, device=device)
        self.eps = [g["eps"] for g in groups]
        if len(set(self.eps)) != 1:
            raise ValueError("packed members must share Adam's epsilon")
        self.eps = self.eps[0]
        self.state: Dict[str, Dict[str, Tensor]] = {}
        self.names = list(params)
        steps = []
        for name in self.names:
            exp_avg, exp_avg_sq, step = [], [], []
            for opt, named in zip(optimizers, members):
                p = named[name]
                s = opt.state.get(p, {})
                exp_avg.append(s["exp_avg"].to(device) if "exp_avg" in s else torch.zeros_like(p))
                exp_avg_sq.append(s["exp_avg_sq"].to(device) if "exp_avg_sq" in s else torch.zeros_like(p))
                step.append(float(s["step"]) if "step" in s else 0.0)
            self.state[name] = {"exp_avg": torch.stack(exp_avg), "exp_avg_sq": torch.stack(exp_avg_sq)}
            steps.append(step)
        if any(s != steps[0] for s in steps):
            raise ValueError("the parameters of a member's optimiser have different step counts")
        self.step_count = torch.tensor(steps[0], dtype=torch.float64, device=device)  # [K]

    @torch.no_grad()
    def step(self, due: Optional[Sequence[bool]] = None, mask: Optional[Tensor] = None) -> None:
        """`due`: the members that take this step (all by default), and `mask` the same as a [K]
        bool tensor on the device (the packer's, made once per pattern: no copy per step)."""
        if due is not None and all(due):
            due = mask = None
        elif due is not None and mask is None:
            mask = torch.tensor([bool(d) for d in due], device=self.step_count.device)
        self.step_count += 1 if mask is None else mask.to(torch.float64)
        bias_correction1 = 1 - self.beta1 ** self.step_count
        bias_correction2_sqrt = (1 - self.beta2 ** self.step_count).sqrt()
        # Each factor rounded from float64 to the parameters' dtype, as torch.optim.Adam's Python scalars are.
        dtype = next(iter(self.params.values())).dtype
        step_size = (self.lr / bias_correction1).to(dtype)
        one_minus_beta1, one_minus_beta2 = (1 - self.beta1).to(dtype), (1 - self.beta2).to(dtype)
        beta2, root = self.beta2.to(dtype), bias_correction2_sqrt.to(dtype)
        if mask is not None:  # members not due: x·1 + 0 and a lerp of weight 0 leave them exact
            step_size, one_minus_beta1, one_minus_beta2 = (torch.where(mask, f, 0.0) for f in
                                                           (step_size, one_minus_beta1, one_minus_beta2))
            beta2 = torch.where(mask, beta2, 1.0)
        factors = (step_size, one_minus_beta1, one_minus_beta2, beta2, root)
        for name in self.names:
            stack, own = self._owner[name]
            p, state = self.params[name], self.state[name]
            grad = stack.stacked_grad(own)
            if grad is not None or stack.batched:
                if grad is not None:
                    self._update(p, grad, state["exp_avg"], state["exp_avg_sq"], *(_along(f, grad) for f in factors))
                continue
            for k, g in enumerate(stack.grads(own)):
                if g is not None and (due is None or due[k]):
                    self._update(p[k], g, state["exp_avg"][k], state["exp_avg_sq"][k], *(f[k] for f in factors))

    def _update(self, p, grad, exp_avg, exp_avg_sq, step_size, one_minus_beta1, one_minus_beta2, beta2, root):
        # In place where it can be: a pack's moments are K times a model's, and fresh tensors
        # of that size at every step cost more in page faults than the arithmetic.
        exp_avg.lerp_(grad, one_minus_beta1)
        update = grad * grad
        exp_avg_sq.mul_(beta2).add_(update.mul_(one_minus_beta2))
        torch.sqrt(exp_avg_sq, out=update)
        update.div_(root).add_(self.eps)
        torch.div(exp_avg, update, out=update)
        p.sub_(update.mul_(step_size))

    @torch.no_grad()
    def unstack_into(self, optimizers: Sequence[torch.optim.Optimizer], members: Sequence[Dict[str, nn.Parameter]]) -> None:
        steps = self.step_count.tolist()
        for k, (opt, named) in enumerate(zip(optimizers, members)):
            group = opt.param_groups[0]
            on_device = group.get("fused") or group.get("capturable")
            for name in self.names:
                p = named[name]
                if steps[k] == 0:
                    opt.state.pop(p, None)
                    continue
                step = torch.tensor(steps[k], dtype=torch.float32, device=p.device if on_device else "cpu")
                opt.state[p] = {"step": step, "exp_avg": self.state[name]["exp_avg"][k].clone(),
                                "exp_avg_sq": self.state[name]["exp_avg_sq"][k].clone()}

