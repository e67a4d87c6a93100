"""The error every bad intervention input raises."""


class InterventionError(ValueError):
    """A bad block, SAE, latent id, mask or schedule; the message names it and what was expected."""
