"""aiotaskq/_lua.py: each script gets the library statements it reaches, and only those."""

from __future__ import annotations

from aiotaskq._lua import assemble, source

LIB = """-- header
local A = 1
local function uses_a() return A end
local unused_table = {x = 1}
local later_fn  -- forward declared
local function calls_later() return later_fn() end  -- mentions unused_table in a comment only
later_fn = function()
  return uses_a() + 1
end
local function lonely(s) return s .. 'uses_a' end
"""


def test_a_body_gets_what_it_reaches_transitively_in_library_order() -> None:
    out = assemble(LIB, "return calls_later()")
    assert out.index("local A = 1") < out.index("local function uses_a") < out.index("later_fn = function")
    assert "local later_fn" in out and "local function calls_later" in out
    assert "unused_table" not in out.replace("mentions unused_table in a comment only", "")
    assert "lonely" not in out
    assert out.endswith("return calls_later()")


def test_names_in_strings_and_comments_do_not_pull_in_helpers() -> None:
    body = "return 'uses_a' -- uses_a"
    assert assemble(LIB, body) == "\n" + body
    assert assemble(LIB, "return lonely('x')").count("local function") == 1


def test_the_real_scripts_leave_out_what_they_do_not_use() -> None:
    heartbeat, claim = source("heartbeat"), source("claim")
    assert "local function enqueue_job" not in heartbeat and "local function key_admit" not in heartbeat
    assert "local function key_admit" in claim and "local function release_held" in claim
    assert "local function enqueue_job" not in claim
