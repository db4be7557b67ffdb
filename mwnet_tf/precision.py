"""Whether bfloat16 pays off on this machine.

`mixed_bfloat16` is faster than float32 where the hardware computes in
bfloat16 (GPUs, TPUs, CPUs with AVX512-BF16 or AMX) and many times slower
where it must be emulated (AVX2-only CPUs: BENCHMARKS.md measures the
ratio), so the runner refuses it there instead of letting a run crawl.
"""

import tensorflow as tf

# /proc/cpuinfo flags of CPUs that compute bfloat16 natively: x86's AVX512
# BF16 and AMX, Arm's BF16 extension ("Features" line).
BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags, or None where they cannot be read."""
    try:
        with open(cpuinfo) as file:
            text = file.read()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags or None


def bfloat16_is_native(cpuinfo="/proc/cpuinfo"):
    """True with an accelerator or a bfloat16 CPU, False on a CPU without
    bfloat16 instructions, None where the CPU's flags are unknown."""
    if (tf.config.list_physical_devices("GPU")
            or tf.config.list_physical_devices("TPU")):
        return True
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    return bool(flags & BFLOAT16_CPU_FLAGS)


def check_bfloat16(cpuinfo="/proc/cpuinfo"):
    """Raises ValueError where bfloat16 would be emulated (slow)."""
    if bfloat16_is_native(cpuinfo) is False:
        raise ValueError(
            "--mixed_bfloat16: this CPU has no bfloat16 instructions "
            "(no avx512_bf16, amx_bf16 or bf16 flag in /proc/cpuinfo), so "
            "bfloat16 is emulated and runs many times slower than float32 "
            "(BENCHMARKS.md); drop --mixed_bfloat16 to train in float32.")
