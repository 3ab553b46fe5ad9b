"""Start-up hook of the Python child processes of ``tracedsync run``.

``tracedsync run`` puts this directory first on ``PYTHONPATH``, so every Python it starts (a
multiprocessing spawn or forkserver child, a ``subprocess`` of ``sys.executable``) imports this
``sitecustomize`` while starting. With ``TRACEDSYNC_PATCH=1`` in the environment it calls
``tracedsync.patch()`` (which reads its settings from the ``TRACEDSYNC_*`` variables). Then it
runs the ``sitecustomize`` that this one hides, if there is one further along ``sys.path``, and
leaves it in ``sys.modules``. A Python that cannot import tracedsync (or its dependencies) is
left alone.

Kept to plain Python 3 (no recent syntax): any Python that inherits the environment imports it.
"""

import importlib.machinery
import importlib.util
import os
import sys
from typing import Any


def _import_tracedsync() -> Any:
    try:
        import tracedsync
    except ImportError:
        # Not installed (run from a source checkout): this file is inside the package, so its
        # parent directory is on the way. Look there, at the end of sys.path, shadowing nothing.
        here = os.path.abspath(__file__)  # <parent>/tracedsync/_run/boot/sitecustomize.py
        parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(here))))
        sys.path.append(parent)
        try:
            import tracedsync
        except ImportError:
            return None
        finally:
            sys.path.remove(parent)
    return tracedsync


def _patch() -> None:
    if os.environ.get("TRACEDSYNC_PATCH") != "1":
        return
    tracedsync = _import_tracedsync()
    if tracedsync is not None:
        tracedsync.patch()


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


try:
    _patch()
finally:
    _chain()
