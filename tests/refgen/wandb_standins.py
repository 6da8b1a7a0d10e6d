"""Inert stand-ins for wandb and wandb_workspaces, which SPD's metric modules import for charts
only: importing this module puts a finder in front of the import system that answers every
`wandb*` / `wandb_workspaces*` import with a module whose attributes are callable no-ops.
Import it before anything from SPD."""

import importlib.abc
import importlib.machinery
import sys
import types

STUBS = {"wandb", "wandb_workspaces"}


class _Any:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return _Any()

    def __getattr__(self, n):
        if n.startswith("__"):
            raise AttributeError(n)
        return _Any()

    def __mro_entries__(self, bases):
        return (object,)

    def __or__(self, o):
        return self

    def __ror__(self, o):
        return self


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        m = types.ModuleType(spec.name)

        def ga(n):
            if n.startswith("__"):
                raise AttributeError(n)
            return _Any()

        m.__getattr__ = ga
        m.__path__ = []
        return m

    def exec_module(self, m):
        pass


class _StubFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in STUBS:
            return importlib.machinery.ModuleSpec(name, _StubLoader(), is_package=True)
        return None


sys.meta_path.insert(0, _StubFinder())
