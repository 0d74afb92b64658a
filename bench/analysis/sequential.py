"""Looking at the evidence as it arrives without paying for it in false verdicts.

``bench ab`` may stop as soon as every verdict is decided. Looking after every block and
stopping at the first decided one would inflate the error: each look is another chance
for noise to cross a line (simulated A/A jobs in tests/test_ab.py: 2.0% with a false
REGRESSION, against 0.4% with this rule). So the family-wise ``alpha`` is *spent* as the
job's information grows, with Lan and DeMets' O'Brien-Fleming-type spending function

    alpha(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)),

``t`` the share of the budget spent (pairs, or wall time: ``ab.Schedule``),
and a look at ``t`` takes the increment since the previous look as the level of its
intervals (Bonferroni over the comparison's rows inside it). By the union bound the chance
of any false verdict at any look is at most the sum of the increments, ``alpha``, whatever
the looks' dependence and whenever the job stops. Early looks get almost nothing (a verdict
there needs overwhelming evidence); every look spends, so ``bench ab`` looks at most
``MAX_LOOKS`` times, after each fifth of its budget: the last of 5 looks keeps 0.006 of 0.01
(of 12, it would keep 0.003). A job whose time runs out spends the rest at its last look.
The union bound wants each look's share fixed before that look's data are seen; a wall-time
schedule sets it from how long blocks took, which, with no change between the sides, says
nothing of the verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METHOD = "O'Brien-Fleming alpha spending (Lan-DeMets), Bonferroni within each look"
MAX_LOOKS = 5


def obrien_fleming(t: float, alpha: float) -> float:
    """The error spent by information fraction ``t`` (0 < t <= 1)."""
    from scipy.stats import norm

    if t <= 0:
        return 0.0
    if t >= 1:
        return alpha
    return float(2 * norm.sf(norm.isf(alpha / 2) / math.sqrt(t)))


@dataclass
class Spending:
    """``alpha`` spent as the information (the share of the planned blocks done) grows."""

    alpha: float
    spent: float = 0.0

    def look(self, fraction: float, final: bool = False) -> float:
        """The level a look at ``fraction`` of the plan may use; ``final``: the job stops
        here, and takes whatever is left."""
        target = self.alpha if final or fraction >= 1 else obrien_fleming(fraction, self.alpha)
        increment = max(0.0, target - self.spent)
        self.spent = max(self.spent, target)
        return increment
