"""Name -> builder registries shared by models, datasets, losses, optimizers, schedulers and augmentations."""
from ptsemseg.errors import PtsemsegError, closest


class Registry:
    """Maps YAML names to builders; unknown names fail with the closest valid names."""

    def __init__(self, kind):
        self.kind = kind
        self._builders = {}

    def register(self, *names):
        """Decorator registering a builder under one or more names (aliases)."""

        def decorator(builder):
            for name in names:
                if name in self._builders:
                    raise ValueError(f"{self.kind} '{name}' is registered twice")
                self._builders[name] = builder
            return builder

        return decorator

    def get(self, name):
        if name not in self._builders:
            raise PtsemsegError(f"unknown {self.kind} '{name}'{closest(name, self._builders)}")
        return self._builders[name]

    def __contains__(self, name):
        return name in self._builders

    def names(self):
        return sorted(self._builders)
