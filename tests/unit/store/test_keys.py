"""The key layout is owned by one table: Python's Keys and the Lua scripts' K.<name> build the same strings."""

from __future__ import annotations

import re

import pytest

from jobkit.store.keys import LAYOUT, Keys, expand_lua
from jobkit.store.scripts import SCRIPT_NAMES, script_source


def test_python_and_lua_spell_a_key_the_same_way() -> None:
    keys = Keys("ns")
    assert keys.pending("low") == "ns:low" and keys.messages("low") == "ns:low.msgs"
    assert keys.unique("email:send", "ab12") == "ns:__unique__.email:send.ab12"
    assert keys.schedule_fired("nightly", 1000) == "ns:__schedules__.fired.nightly.1000"
    assert expand_lua('redis.call("get", K.unique(task, ARGV[2]))') == (
        'redis.call("get", (ns .. ":__unique__." .. (task) .. "." .. (ARGV[2])))'
    )
    assert expand_lua("local h = K.heartbeats -- K.nope in a comment stays") == (
        'local h = (ns .. ":__heartbeats__") -- K.nope in a comment stays'
    )


def test_every_script_expands_with_no_key_left_unexpanded() -> None:
    for name in SCRIPT_NAMES:
        code = [line.split("--")[0] for line in script_source(name).decode().splitlines()]
        assert not [line for line in code if re.search(r"(?<![\w.])K\.", line)], name


def test_a_key_the_layout_does_not_have_is_refused_when_the_script_loads() -> None:
    with pytest.raises(KeyError, match=r"K\.pendng"):
        expand_lua("redis.call('llen', K.pendng(queue))")
    with pytest.raises(ValueError, match=r"takes 1 argument"):
        expand_lua("redis.call('llen', K.pending(queue, extra))")


def test_every_key_has_one_naming_style() -> None:
    for name, key in LAYOUT.items():
        rest = key.template.removeprefix("{ns}:")
        assert rest != key.template, name
        assert re.fullmatch(r"(\{queue\}(\.[a-z_.{}A-Z]+)?|__[a-z_]+__(\.[a-z_.{}]+)?)", rest), (name, rest)
