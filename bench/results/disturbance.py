"""When a process run counts as disturbed by other work, and how that is said. The figures
come from ``bench.telemetry.disturbance``; reports and comparisons read them from results."""

from __future__ import annotations

from typing import Any

# A process is "disturbed" when, during its window, other processes used at least a
# quarter of a core on average, or the hypervisor stole at least 5% of the machine's CPU
# time. Below that the harness's own parent and the OS's housekeeping fit.
OTHERS_CORES_LIMIT = 0.25
STEAL_LIMIT = 0.05


def describe(d: dict[str, Any]) -> str:
    """'others used 0.98 cores, 0.1% stolen, 41 involuntary switches'."""
    parts = []
    if d.get("others_cores") is not None:
        parts.append(f"others used {d['others_cores']:.2f} cores")
    if d.get("steal_fraction") is not None:
        parts.append(f"{100 * d['steal_fraction']:.1f}% stolen")
    parts.append(f"{d.get('involuntary_switches') or 0} involuntary switches")
    return ", ".join(parts)
