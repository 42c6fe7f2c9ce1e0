"""The closed-form ε of a (merged) Gaussian release agrees with dp-accounting's PLD."""

import pytest
from dp_accounting import GaussianDpEvent, pld
from fedseg.privacy.accounting import Release, epsilon_spent, gaussian_epsilon


@pytest.mark.parametrize("z", [0.7, 1.5, 3.7306, 10.0, 60.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-6, 1e-9])
def test_closed_form_matches_fine_grained_pld(z, delta):
    accountant = pld.PLDAccountant(value_discretization_interval=1e-5)
    accountant.compose(GaussianDpEvent(z))
    assert gaussian_epsilon(z, delta) == pytest.approx(accountant.get_epsilon(delta), abs=1e-4)


def test_composition_of_gaussians_uses_the_merged_multiplier():
    # 10 rounds at z = 10 are one Gaussian at z = 10/√10 (precisions add).
    composed = epsilon_spent([Release("r", 10.0, count=10)], delta=1e-6)
    assert composed == pytest.approx(gaussian_epsilon(10.0 / 10**0.5, 1e-6), rel=1e-12)
    assert composed == pytest.approx(1.368, abs=1e-3)
