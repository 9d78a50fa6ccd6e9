"""The Hydra configs of training and testing (``train.yaml``, ``test.yaml`` and their groups),
shipped inside the package so that an installed ``fssam`` finds them: entry points use
``pkg://fssam.configs``; ``fssam.engine.config.compose_config`` composes them in code.
Importing the package registers the schemas the YAML files name (``schema.py``)."""

from fssam.configs.schema import register

register()
