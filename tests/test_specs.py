"""The records crossing the plugin boundary: TaskContext.once's per-task cache namespace."""

from doubles.context import task_context


def context(task="", cache=None):
    return task_context(hook="h", cache=cache, task=task)


def test_once_computes_each_key_once_per_process():
    calls = []
    ctx = context("ravel")
    first = ctx.once(("prepared", "smoke", 0), lambda: calls.append(1) or [1, 2])
    again = ctx.once(("prepared", "smoke", 0), lambda: calls.append(1) or [3])
    other = ctx.once(("prepared", "smoke", 1), lambda: calls.append(1) or [4])
    assert first is again and other == [4] and len(calls) == 2


def test_two_tasks_sharing_a_cache_never_see_each_others_values():
    shared: dict = {}
    ravel, ioi = context("ravel", shared), context("ioi", shared)
    assert ravel.once("prepared", lambda: "ravel's") == "ravel's"
    assert ioi.once("prepared", lambda: "ioi's") == "ioi's"


def test_a_hand_built_context_without_a_task_is_namespaced_by_the_computing_module():
    import types

    shared: dict = {}
    ctx = context("", shared)  # one context passed to two tasks' run(), as tests do
    # each task module computes its own value: same key, different defining modules
    first = types.FunctionType((lambda: "a").__code__, {"__name__": "saebench_tasks.ravel"})
    second = types.FunctionType((lambda: "b").__code__, {"__name__": "saebench_tasks.ioi"})
    assert ctx.once("prepared", first) == "a"
    assert ctx.once("prepared", second) == "b"
