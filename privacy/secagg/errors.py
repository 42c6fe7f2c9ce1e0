"""Exceptions of the secure-aggregation protocol.

None of them ever carries a merchant's value: messages name fields, shapes, counts and
parameters only (a value in an error would be an uncharged release).
"""


class SecAggError(Exception):
    """Base class of every secure-aggregation error."""


class SecAggConfigError(SecAggError, ValueError):
    """A parameter is invalid, infeasible or outside this merchant's limits (named)."""


class EncodingShapeError(SecAggError, ValueError):
    """An input has the wrong field names or shapes (never a range error: values are clipped)."""


class SecAggProtocolError(SecAggError, ValueError):
    """A client refuses a server message that breaks the protocol rules.

    The client takes no further part in the round; the adapter turns this into the fixed
    error code ``fedseg:secagg_protocol`` and logs the message locally.
    """


class SecAggAborted(SecAggError):
    """The server cannot finish the round without risking privacy or correctness.

    Nothing is released. The message says which parameter to change when the cause is
    too many dropouts.
    """
