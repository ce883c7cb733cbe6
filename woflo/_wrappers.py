"""Driving new-style hook wrappers (``wrapper=True``) as pluggy's call does, without its
per-call machinery: the execution wrappers around every attempt (:mod:`woflo._hooks`)."""

from __future__ import annotations

from typing import Any

__all__ = ["wrapped_call"]


def wrapped_call(plan: list[Any], args: tuple[Any, ...]) -> Any:
    """What pluggy's call of a ``firstresult`` hook answers whose wrappers are all new-style
    (``wrapper=True``), in its order and with its semantics: each wrapper runs to its
    ``yield`` (outermost first), the first answer but ``None`` of the others is sent back in
    (an exception thrown in), innermost wrapper first; what a wrapper returns or raises is
    what the next one out gets. Without pluggy's per-call machinery (two thirds of it)."""
    result: Any = None
    error: BaseException | None = None
    entered: list[Any] = []
    try:
        for function, picks, impl in plan:
            answer = function(*args) if picks is None else function(*[args[i] for i in picks])
            if impl.wrapper:
                try:
                    next(answer)
                except StopIteration as stopped:  # (its context kept, as pluggy's is)
                    raise RuntimeError(_misbehaved(answer, "did not yield")) from stopped
                entered.append(answer)
            elif answer is not None:
                result = answer
                break
    except BaseException as exc:
        error = exc
    for wrapper in reversed(entered):
        try:
            if error is not None:
                try:
                    wrapper.throw(error)
                except RuntimeError as exc:  # (a StopIteration thrown in comes back so)
                    if isinstance(error, StopIteration) and exc.__cause__ is error:
                        wrapper.close()
                        continue
                    raise
            else:
                wrapper.send(result)
            wrapper.close()  # (a second yield: its finally blocks run, and may raise)
        except StopIteration as stopped:
            result, error = stopped.value, None
            continue
        except BaseException as exc:
            error = exc
            continue
        raise RuntimeError(_misbehaved(wrapper, "has second yield"))  # (past the others, as
        # pluggy does: no wrapper outside it sees this error)
    if error is not None:
        raise error
    return result


def _misbehaved(wrapper: Any, what: str) -> str:
    code = wrapper.gi_code
    return f"wrap_controller at {code.co_name!r} {code.co_filename}:{code.co_firstlineno} {what}"
