"""The pieces of the verdicts: values as data, the digest of inputs, the static checks, the replay."""
import collections

import numpy as np
import pytest
import torch

from mlcourse import wire
from mlcourse.exercise_checks import assert_own_implementation, runs_in_your_kernel
from mlcourse.grading.replay import TestPlan as Plan, replay
from mlcourse.grading.static import disarm, hazards, ownership

Pair = collections.namedtuple("Pair", "a b")


@pytest.mark.parametrize("value", [None, True, 3, 2**80, 0.1, float("inf"), "text", b"\x00\xff",
                                   np.arange(6, dtype=np.int16).reshape(2, 3), np.float32(1.5), np.zeros((0, 4)),
                                   (1, [2.5, {"k": "v"}]), {1, 2}])
def test_plain_values_come_back_equal(value):
    back = wire.decode(wire.encode(value))
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and np.array_equal(back, value)
    else:
        assert back == value and type(back) is type(value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.int64, torch.bool])
def test_tensors_keep_dtype_shape_and_bits(dtype):
    t = (torch.randn(3, 4) * 10).to(dtype)
    back = wire.decode(wire.encode(t))
    assert back.dtype == dtype and torch.equal(back, t)
    scalar = wire.decode(wire.encode(torch.tensor(2.5, dtype=torch.float64, requires_grad=True)))
    assert scalar.shape == () and scalar.requires_grad


def test_named_tuples_and_unknown_objects():
    back = wire.decode(wire.encode(Pair(1, torch.ones(2))))
    assert back.a == 1 and torch.equal(back.b, torch.ones(2))
    opaque = wire.decode(wire.encode(object()))
    assert isinstance(opaque, wire.Opaque) and opaque != opaque


@pytest.mark.parametrize("bad", [{"t": "ndarray", "dtype": "|O", "shape": [1], "data": ""},
                                 {"t": "ndarray", "dtype": "<f8", "shape": [3], "data": "AAAA"},
                                 {"t": "tensor", "torch_dtype": "nn", "dtype": "<f8", "shape": [0], "data": ""},
                                 {"t": "pickle", "v": "gASVAAAA"}, ["not", "a", "dict"]])
def test_malformed_or_unsafe_values_are_refused(bad):
    with pytest.raises(wire.WireError):
        wire.decode(bad)


def test_the_digest_sees_bytes_weights_flags_and_generator_state():
    x = torch.arange(4.0)
    assert wire.digest(x) == wire.digest(torch.arange(4.0)) != wire.digest(torch.arange(4.0) + 1e-12)
    net = torch.nn.Linear(2, 2)
    before = wire.digest(net)
    net.weight.requires_grad_(False)
    assert wire.digest(net) != before
    rng = np.random.default_rng(0)
    state = wire.digest(rng)
    rng.random()
    assert wire.digest(rng) != state


CELLS = ["import numpy as np\nfrom mlcourse.episodes import sample_episode_indices as ref",
         "def helper(x):\n    return ref(x)\n\ndef via_helper(x):\n    return helper(x)\n\n"
         "def own(model):\n    model.eval()\n    return [m for m in model.modules()]\n\n"
         "def strings(x):\n    return eval('x')\n\nalias = own\n"]


@pytest.mark.parametrize("name, reason", [("own", None), ("alias", None), ("via_helper", "uses ref from mlcourse"),
                                          ("strings", "runs code from a string"),
                                          ("missing", "not defined with `def`")])
def test_ownership_follows_the_functions_an_answer_calls(name, reason):
    why = ownership(CELLS, name)
    assert (why is None) if reason is None else (reason in why), why


def test_the_screen_flags_kernel_machinery_and_disarms_shell_lines():
    found = hazards("import sys\nsys.settrace(None)\nx.__globals__\nimport no_such_module_anywhere\n"
                    "model.modules()\nmodel.eval()")
    assert [f.split(":")[0] for f in found] == ["line 2", "line 3", "line 4"], found
    assert disarm("!pip install x\n%timeit f(3)\nfiles = !ls\ny = 1") == ("pass\nf(3)\npass\ny = 1", [1, 3])
    assert disarm("%%bash\nrm -rf /") == ("pass", [1, 2])


def test_a_helper_outside_grading_is_the_function_itself():
    @runs_in_your_kernel
    def double(x):
        return 2 * x

    assert double(3) == 6 and double.__name__ == "double"


def _plan(source, names, own=None):
    return Plan("t", source, source, source, "import numpy as np", names, own or {})


def test_the_replay_passes_only_on_the_right_values_for_the_right_inputs():
    source = "out = f(np.arange(3))\nassert out.sum() == 6 and out.shape == (3,)"
    good = [{"name": "f", "inputs": wire.digest(([np.arange(3)], {})), "result": wire.encode(np.array([1, 2, 3]))}]
    assert replay(_plan(source, ["f"]), good)["status"] == "passed"
    wrong = [{**good[0], "result": wire.encode(np.array([0, 0, 0]))}]
    assert replay(_plan(source, ["f"]), wrong)["status"] == "failed"
    other_inputs = [{**good[0], "inputs": wire.digest(([np.arange(4)], {}))}]
    verdict = replay(_plan(source, ["f"]), other_inputs)
    assert verdict["error"] == "CallMismatch" and "other inputs" in verdict["message"]
    assert replay(_plan(source, ["f"]), [])["error"] == "CallMismatch"  # the kernel sent nothing


def test_an_exception_the_kernel_reports_is_raised_in_the_replay():
    source = "try:\n    f(1)\nexcept ValueError as err:\n    assert 'seven' in str(err)\nelse:\n    raise AssertionError"
    calls = [{"name": "f", "inputs": wire.digest(([1], {})),
              "raised": {"type": "MyError", "message": "seven", "bases": ["ValueError", "Exception"]}}]
    assert replay(_plan(source, ["f"]), calls)["status"] == "passed"


def test_the_static_verdict_reaches_assert_own_implementation():
    source = "from mlcourse.exercise_checks import assert_own_implementation\nassert_own_implementation(f)"
    assert replay(_plan(source, ["f"], {"f": None}), [])["status"] == "passed"
    failed = replay(_plan(source, ["f"], {"f": "f uses mlcourse"}), [])
    assert failed["status"] == "failed" and "uses mlcourse" in failed["message"]
    from mlcourse.evaluation import accuracy_ci

    with pytest.raises(AssertionError, match="mlcourse's own function"):
        assert_own_implementation(accuracy_ci)  # outside grading: the function itself is looked at
