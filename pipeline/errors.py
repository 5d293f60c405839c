"""ConfigError, the error of a bad configuration, flag or input (the command exits 2).

Its own module so that config.py and platform_names.py, which config.py calls to validate, both use it without
importing each other.
"""


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message says which and what to do."""
