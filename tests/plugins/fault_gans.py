"""ns_gan variants for the fault tests of workers (tests/studies/test_faults.py, test_soak.py), as
plug-ins (`FILE.py:Class`):

- `AlwaysFails`: every training step raises RuntimeError: its slots end failed after the retries.
- `DeviceFails`: raises the error a broken CUDA context gives: the worker re-queues and exits.
- `Sleepy`: sleeps BENCH_TEST_SLEEP seconds (default 0.1) per step, so that trials overlap.
"""

import os
import time

from bench.models.gan_variants import NonSaturatingGAN


class AlwaysFails(NonSaturatingGAN):
    def train_step(self, real, rng):
        if real.device.type != "meta":  # not the FLOP count
            raise RuntimeError("fails on purpose in every step")
        return super().train_step(real, rng)


class DeviceFails(NonSaturatingGAN):
    def train_step(self, real, rng):
        if real.device.type != "meta":
            raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")
        return super().train_step(real, rng)


class Sleepy(NonSaturatingGAN):
    def train_step(self, real, rng):
        if real.device.type != "meta":
            time.sleep(float(os.environ.get("BENCH_TEST_SLEEP", "0.1")))
        return super().train_step(real, rng)
