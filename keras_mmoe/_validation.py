"""Argument checks shared by the layers: fail early, repeat the value."""


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` expected a positive integer. Received: {name}={value!r}"
        )
    return value


def non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"`{name}` expected a non-negative integer. "
            f"Received: {name}={value!r}"
        )
    return value


def units_list(name: str, value) -> list[int]:
    """An int or a non-empty sequence of positive ints -> list of widths."""
    widths = [value] if isinstance(value, int) else value
    if (
        isinstance(value, (str, bool))
        or not isinstance(widths, (list, tuple))
        or not widths
        or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1
            for w in widths
        )
    ):
        raise ValueError(
            f"`{name}` expected a positive integer or a non-empty list of "
            f"positive integers. Received: {name}={value!r}"
        )
    return list(widths)


def positive_float(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or value != value
    ):
        raise ValueError(
            f"`{name}` expected a positive number. Received: {name}={value!r}"
        )
    return float(value)


def non_negative_float(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value >= 0
    ):
        raise ValueError(
            f"`{name}` expected a number >= 0. Received: {name}={value!r}"
        )
    return float(value)


def rate(name: str, value) -> float:
    """A probability in [0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"`{name}` expected a number in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(
            f"`{name}` expected a bool. Received: {name}={value!r}"
        )
    return value
