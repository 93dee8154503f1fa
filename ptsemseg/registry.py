"""Name -> builder registries shared by models, datasets, losses, optimizers, schedulers and augmentations."""
import inspect

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

    def check_options(self, name, options, given=(), shared=()):
        """Fail in one line when YAML `options` for `name` hold keys its builder does not take or lack required ones.

        The one option checker of every kind: losses, optimizers and schedulers call it when built, config
        validation for the model and dataset options.

        `given` are the builder's parameters the caller passes itself (params, optimizer...); `shared` are keys the
        caller handles for every builder of this kind (a loss's scale_weight...), valid but not passed on.
        """
        params = inspect.signature(self.get(name)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        takes = [key for key, p in params.items() if key not in given
                 and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        valid = takes + [key for key in shared if key not in takes]
        unknown = [key for key in options if key not in valid]
        if unknown:
            hint = closest(unknown[0], valid)[2:-1]  # "closest: a, b" or ""
            raise PtsemsegError(f"{self.kind} '{name}': unknown option {', '.join(repr(k) for k in unknown)} "
                                f"({hint + '; ' if hint else ''}valid: {', '.join(valid) or 'none'})")
        missing = [key for key in takes if params[key].default is inspect.Parameter.empty and key not in options]
        if missing:
            raise PtsemsegError(f"{self.kind} '{name}': missing option {', '.join(repr(k) for k in missing)}")
