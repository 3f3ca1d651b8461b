"""Config: the shipped tree, composition with Hydra, the schema, validation."""

from . import resolvers  # noqa: F401  (registers the resolvers the config tree uses)
