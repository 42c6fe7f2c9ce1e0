"""A simulated merchant's settings are parsed once per run config, and again when it changes."""

from fedseg.client import app as client_app


def test_settings_follow_the_run_config_values_and_types(mixture_federation):
    settings = client_app._SimulatedSettings()
    run = {"sim-data-dir": str(mixture_federation), "seed": 0, "as-of": "2026-01-01"}
    first = settings(0, run)
    assert settings(0, dict(run)) is first  # an equal config: parsed once
    assert settings(1, run).data_path != first.data_path
    assert settings(0, {**run, "seed": 3}).simulation_seed == 3
    changed_type = settings(0, {**run, "epsilon": 2})
    assert settings(0, {**run, "epsilon": 2.0}) is not changed_type  # 2 == 2.0, other type
    assert settings(0, {**run, "epsilon": 2.0}).policy.epsilon_cap == 2.0
