"""wdrepo: a repository of neural-network weights, and a drop-in for
deltatensors' five functions (import wdrepo as dt). See docs/PYTHON.md."""
from .deltatensors import inspect, load_delta, load_delta_from_paths, save_delta, save_delta_from_paths
from .errors import (AmbiguousError, BadInputError, BusyError, CancelledError, CorruptError, ExistsError,
                     IOFailure, MismatchError, MissingTensorError, NotFoundError, OutOfMemory, UsageError,
                     WdrepoError)
from .repository import Repository

__version__ = "0.1.0"

__all__ = ["save_delta_from_paths", "load_delta_from_paths", "inspect", "save_delta", "load_delta", "Repository",
           "WdrepoError", "UsageError", "NotFoundError", "AmbiguousError", "BadInputError", "CorruptError",
           "IOFailure", "OutOfMemory", "BusyError", "ExistsError", "MismatchError", "MissingTensorError",
           "CancelledError"]
