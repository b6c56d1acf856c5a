"""SSM PutParameter without Overwrite, as atomic in the sandbox as on AWS.

On AWS, creating a parameter that already exists fails (ParameterAlreadyExists) however many callers race for the
name: exactly one wins. The roll's lock and the storm guard's repair slots (provision/heal/slots.py) rest on that.
moto's put_parameter checks whether the name exists and appends the new version a few dozen lines later, with no lock,
and its server handles requests on many threads: health agents claiming a slot at the same moment could both win. This
patch makes the check and the write one step, for every moto in the process.
"""

from __future__ import annotations

import threading
from typing import Any

_ORIGINAL: dict[str, Any] = {}
_INSTALL_LOCK = threading.Lock()
_WRITE_LOCK = threading.RLock()


def install() -> None:
    """Patch moto's SSM once per process."""
    from moto.ssm.models import SimpleSystemManagerBackend

    with _INSTALL_LOCK:
        if _ORIGINAL:
            return
        _ORIGINAL["put_parameter"] = SimpleSystemManagerBackend.put_parameter
        SimpleSystemManagerBackend.put_parameter = _put_parameter  # type: ignore[method-assign,assignment]


def _put_parameter(backend: Any, *args: Any, **kwargs: Any) -> Any:
    with _WRITE_LOCK:
        return _ORIGINAL["put_parameter"](backend, *args, **kwargs)
