"""``copy_weights``: a warm start copies every weight by path, or refuses with the misfit named."""

import keras
import numpy as np
import pytest

from speechkit.errors import ConfigError
from speechkit.training import copy_weights


def _dense(units, name="d", zeros=False, extra=None):
    inputs = keras.Input((3,))
    x = keras.layers.Dense(units, name=name)(inputs)
    if extra:
        x = keras.layers.Dense(2, name=extra, kernel_initializer="zeros" if zeros else "glorot_uniform")(x)
    return keras.Model(inputs, x)


def test_copies_by_path_and_reports_new_zero_weights():
    donor, fresh = _dense(4), _dense(4, extra="new", zeros=True)
    added = copy_weights(fresh.weights, donor.weights, source="donor", section="net", new_at_zero=True)
    assert added == ["new/kernel", "new/bias"]
    np.testing.assert_array_equal(fresh.get_layer("d").kernel.numpy(), donor.get_layer("d").kernel.numpy())


@pytest.mark.parametrize("fresh, new_at_zero, misfit", [
    (lambda: _dense(5), False, r"d/kernel: \(3, 4\) vs \(3, 5\)"),
    (lambda: _dense(4, extra="new", zeros=True), False, "new/kernel: missing"),
    (lambda: _dense(4, extra="new"), True, "new/kernel: not in the donor, and not zero"),
])
def test_refuses_a_donor_that_does_not_fit(fresh, new_at_zero, misfit):
    with pytest.raises(ConfigError, match=f"donor: its net differs.*{misfit}"):
        copy_weights(fresh().weights, _dense(4).weights, source="donor", section="net", new_at_zero=new_at_zero)


def test_refuses_a_donor_weight_with_no_place():
    with pytest.raises(ConfigError, match="extra/bias: not in this model"):
        copy_weights(_dense(4).weights, _dense(4, extra="extra").weights, source="donor", section="net")
