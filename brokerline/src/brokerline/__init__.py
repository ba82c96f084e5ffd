"""brokerline: a Kratos-style service framework for Python with broker transport plugins.

The broker API (`Broker`, `MessageContext`, `Reject`, ...) is re-exported here; plugins live
in one subpackage per broker (`brokerline.memory`, `.nats`, `.jetstream`, `.pulsar`), the App
and its servers in `brokerline.app` and `brokerline.server`.
"""

from brokerline.core import *  # noqa: F403 - the broker API is the package's API
from brokerline.core import __all__ as _core_api

__version__ = "0.1.0"

__all__ = [*_core_api, "__version__"]
