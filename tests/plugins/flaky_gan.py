"""ns_gan variants that stop on purpose while an environment variable is set, as plug-ins
(`FILE.py:Class`) for `bench run` / `bench worker` tests; with the variable unset they are ns_gan.

- `FailsWhileAsked` (fails_while_asked): raises RuntimeError in its first step while
  BENCH_TEST_FAIL is set: the trial fails.
- `InterruptedWhileAsked` (interrupted_while_asked): raises KeyboardInterrupt in its first step
  while BENCH_TEST_INTERRUPT is set, as Ctrl-C would: the trial goes back to the queue, WAITING.
"""

import os

from bench.models.gan_variants import NonSaturatingGAN


class FailsWhileAsked(NonSaturatingGAN):
    def train_step(self, real, rng):
        if os.environ.get("BENCH_TEST_FAIL") and real.device.type != "meta":  # not the FLOP count
            raise RuntimeError("failing on purpose (BENCH_TEST_FAIL is set)")
        return super().train_step(real, rng)


class InterruptedWhileAsked(NonSaturatingGAN):
    def train_step(self, real, rng):
        if os.environ.get("BENCH_TEST_INTERRUPT") and real.device.type != "meta":
            raise KeyboardInterrupt
        return super().train_step(real, rng)
