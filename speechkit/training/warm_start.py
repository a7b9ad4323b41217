"""Warm starts: a new run begins from the weights of another run or a released model of its family."""

import numpy as np

from speechkit.errors import ConfigError

__all__ = ["copy_weights"]


def copy_weights(ours, theirs, *, source, section, new_at_zero=False):
    """Assign the donor's weights to a freshly built model's, matched by path.

    Every weight must match one of the donor's with the same shape, and every donor weight must be
    used, so that a warm start never silently drops or reshapes part of a network.

    Args:
        ours: the freshly built model's variables (a list).
        theirs: the donor's variables (a list).
        source: str, the donor's run folder or model name, for messages.
        section: str, what the weights are ("WaveNet", "network"), for messages.
        new_at_zero: bool, a weight the donor lacks may keep its initial value if that value is all
            zeros (the projection of a new input, such as ``pulse_input``'s), so that the model
            begins as the donor's function.

    Returns:
        list of str, the paths of the weights the donor lacked (kept at zero).

    Raises:
        ConfigError: a shape differs, a donor weight has no place here, or a weight the donor lacks
            may not (or does not) start at zero.
    """
    donor = {v.path: v for v in theirs}
    misfits = [f"{v.path}: {tuple(donor[v.path].shape)} vs {tuple(v.shape)}"
               for v in ours if v.path in donor and tuple(donor[v.path].shape) != tuple(v.shape)]
    misfits += [f"{v.path}: " + ("not in the donor, and not zero at the start" if new_at_zero else "missing")
                for v in ours if v.path not in donor and (not new_at_zero or np.any(v.numpy()))]
    misfits += [f"{path}: not in this model" for path in sorted(set(donor) - {v.path for v in ours})]
    if misfits:
        raise ConfigError(f"{source}: its {section} differs from this run's model section ({misfits[0]}); "
                          "cannot start from its weights")
    for variable in ours:
        if variable.path in donor:
            variable.assign(donor[variable.path])
    return [v.path for v in ours if v.path not in donor]
