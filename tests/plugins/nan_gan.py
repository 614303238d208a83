"""ns_gan variants that diverge on purpose, as plug-ins (`FILE.py:Class`) for `bench run` tests.

- `NanAfterStep4` (registered as nan_after_step4): its generator's weights become NaN once it has taken 4 steps: with an
  evaluation every 2 steps it records two finite points (steps 2 and 4) and then diverges.
- `NanAtStep1` (nan_at_step1): the same from its first step: it diverges before any evaluation point.
"""

import torch

from bench.models.gan_variants import NonSaturatingGAN


class NanAfterStep4(NonSaturatingGAN):
    nan_after = 4

    def train_step(self, real, rng):
        if self.steps == self.nan_after:
            with torch.no_grad():
                for p in self.G.parameters():
                    p.fill_(float("nan"))
        return super().train_step(real, rng)


class NanAtStep1(NanAfterStep4):
    nan_after = 0
