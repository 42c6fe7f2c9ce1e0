"""Exceptions of the secure-aggregation protocol.

Configuration and input mistakes are ``ValueError`` subclasses (the caller's bug, named
field); a round that cannot finish safely raises :class:`SecAggAborted` and releases
nothing.
"""


class SecAggError(Exception):
    """Base class of every secure-aggregation error."""


class SecAggConfigError(SecAggError, ValueError):
    """A configuration parameter is invalid or infeasible (the message names it)."""


class EncodingRangeError(SecAggError, ValueError):
    """An input value is outside the encodable range, NaN/inf, or has the wrong shape."""


class SecAggProtocolError(SecAggError, ValueError):
    """A client refuses a server message that breaks the protocol rules.

    The lead's adapter turns it into an error reply; the server then treats the client
    as dropped.
    """


class SecAggAborted(SecAggError):
    """The round cannot be completed without risking privacy or correctness.

    Raised by the server (too few survivors, a secret that cannot be reconstructed);
    nothing is released.
    """
