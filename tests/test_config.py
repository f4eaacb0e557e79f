import math

import numpy as np
import pytest

from cfenv.config import PRESETS, TABLE2_SIZES, SystemConfig, parse_size


def test_path_loss_constant_matches_spec():
    assert SystemConfig().path_loss_const_db == pytest.approx(140.7, abs=0.05)


def test_noise_power_and_normalised_powers():
    cfg = SystemConfig()
    assert cfg.noise_power_dbm == pytest.approx(-174 + 10 * math.log10(20e6) + 9)
    assert cfg.rho_p == pytest.approx(0.1 / (10 ** ((cfg.noise_power_dbm - 30) / 10)))
    assert cfg.rho_d / cfg.rho_p == pytest.approx(2.0)


def test_presets_cover_table2_sizes():
    assert sorted(p.size for p in PRESETS.values()) == sorted(TABLE2_SIZES)
    assert PRESETS["45,2,20,10"].size == (45, 2, 20, 10)
    assert SystemConfig.from_size("10,2,6,3").size == (10, 2, 6, 3)


@pytest.mark.parametrize("field", ["M", "L", "K", "tau_p"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_bad_integer_field_raises_value_error_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        SystemConfig(**{field: value})


@pytest.mark.parametrize("field", ["pilot_power_w", "ap_power_w", "bandwidth_hz", "area_side_m"])
def test_non_positive_quantities_raise(field):
    with pytest.raises(ValueError, match=field):
        SystemConfig(**{field: -1.0})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_values_raise(value):
    with pytest.raises(ValueError, match="noise_figure_db"):
        SystemConfig(noise_figure_db=value)


def test_break_points_must_be_ordered():
    with pytest.raises(ValueError, match="d1_m"):
        SystemConfig(d0_m=60.0, d1_m=50.0)


def test_numpy_integers_are_accepted():
    assert SystemConfig(K=np.int64(4)).K == 4


def test_unknown_field_raises_type_error():
    with pytest.raises(TypeError):
        SystemConfig().replace(not_a_field=1)


@pytest.mark.parametrize("text", ["10,2,6", "a,b,c,d", "10,2,0,3"])
def test_parse_size_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_size(text)


# ------------------------------------------------------------- a config that is not a SystemConfig (issue #30)
@pytest.mark.parametrize("config", ["x", {"M": 3}, 5])
def test_environments_refuse_a_config_that_is_not_a_system_config(config):
    import gymnasium as gym

    import cfenv

    for env_id in ("CellFreePilot-v0", "CellFreePilotSequential-v0"):
        with pytest.raises(ValueError, match=r"config must be a cfenv\.SystemConfig") as err:
            gym.make(env_id, config=config)
        assert repr(config) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"config must be a cfenv\.SystemConfig"):
        cfenv.CellFreePilotVectorEnv(2, config=config)


@pytest.mark.parametrize("config", [{"M": 10}, "x", None])
def test_rate_functions_refuse_a_config_that_is_not_a_system_config(config):
    import numpy as np

    import cfenv

    cfg = cfenv.SystemConfig.from_size((10, 2, 6, 3))
    beta = cfenv.draw_snapshots(cfg, np.random.default_rng(0), (2,)).beta
    pilots = np.zeros((2, 6), dtype=np.int64)
    for rate in (cfenv.sum_rate, cfenv.user_rates):
        for backend in ("auto", "reference"):
            with pytest.raises(ValueError, match=r"config must be a cfenv\.SystemConfig"):
                rate(beta, pilots, config, backend=backend)
