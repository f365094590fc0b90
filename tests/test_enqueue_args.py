"""Arguments checked at enqueue: a call the task could never run is refused, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import litejobs


def make(tmp_path: Path) -> tuple[litejobs.App, Any, Any]:
    app = litejobs.App(tmp_path / "j.db")

    @app.task(name="mail.send")
    def send(to: str, subject: str, *, cc: str = "") -> None: ...

    @app.task(name="t.many")
    def many(first: Any, *rest: Any, flag: bool, **extra: Any) -> None: ...

    return app, send, many


def total(app: litejobs.App) -> int:
    return sum(app.stats()["states"].values())


def test_too_many_positional_arguments_are_refused(tmp_path: Path) -> None:
    app, send, _ = make(tmp_path)
    with pytest.raises(TypeError, match=r"^task 'mail.send' takes 2 positional arguments but "
                                        r"3 were given; nothing was enqueued$"):
        send.enqueue("a", "b", "c")
    assert total(app) == 0


@pytest.mark.parametrize(("args", "kwargs", "what"), [
    (("a",), {}, "missing a required argument: 'subject'"),
    (("a", "b"), {"bcc": "x"}, "got an unexpected keyword argument 'bcc'"),
    (("a",), {"to": "b", "subject": "s"}, "multiple values for argument 'to'"),
])
def test_calls_a_plain_call_would_refuse_are_refused(tmp_path: Path, args: tuple[Any, ...],
                                                     kwargs: dict[str, Any], what: str) -> None:
    app, send, _ = make(tmp_path)
    with pytest.raises(TypeError, match=f"^task 'mail.send': {what}.*nothing was enqueued$"):
        send.enqueue(*args, **kwargs)
    with pytest.raises(TypeError, match=what):
        send.options(delay=5).enqueue(*args, **kwargs)
    with pytest.raises(TypeError, match=what):
        app.enqueue("mail.send", args=list(args), kwargs=kwargs)
    with pytest.raises(TypeError, match=what):
        app.enqueue_many([send.prepare("x", "y")] * 9 + [send.prepare(*args, **kwargs)])
    assert total(app) == 0


def test_valid_calls_pass_every_way(tmp_path: Path) -> None:
    app, send, many = make(tmp_path)
    send.enqueue("a", "b")
    send.enqueue("a", subject="b", cc="c")
    send.enqueue(to="a", subject="b")
    app.enqueue("mail.send", args=["a"], kwargs={"subject": "s"})
    many.enqueue(1, 2, 3, flag=True, anything=4)
    app.enqueue_many([send.prepare("a", str(i)) for i in range(20)])
    assert total(app) == 25
    with pytest.raises(TypeError, match="missing a required argument: 'flag'"):
        many.enqueue(1, 2, 3)


def test_a_name_this_process_has_not_registered_is_not_checked(tmp_path: Path) -> None:
    app, _, _ = make(tmp_path)
    app.enqueue("elsewhere.task", args=[1, 2, 3])  # a producer need not import task code
    assert total(app) == 1


def test_non_string_dict_keys_are_refused_with_their_path(tmp_path: Path) -> None:
    app, send, _ = make(tmp_path)
    with pytest.raises(TypeError, match=r"argument 'to' has a dict key that is not a string: "
                                        r"1 \(int\) in to\['a'\]\[0\];.*nothing was enqueued"):
        send.enqueue({"a": [{1: "x"}]}, "s")
    with pytest.raises(TypeError, match=r"argument 'cc' .* None \(NoneType\) in cc\[2\]"):
        send.enqueue("a", "b", cc=[0, 1, {None: 1}])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"argument 'subject' .* 2 \(int\) in subject\['x'\]"):
        app.enqueue_many([send.prepare("a", {"x": {2: 3}})] * 10)  # the bulk path too
    assert total(app) == 0
    # string keys, and "{" inside strings, pass
    app.enqueue_many([send.prepare("{", {"x": {"2": 3}})] * 10)
    send.enqueue("{}", {"k": "{"})
    assert total(app) == 11
