"""The names a markdown component map's hooks declare: the memo's dependencies."""

from __future__ import annotations

import pytest

from behest_chat.components.stable_markdown import hook_names


def test_names_from_destructuring_and_plain_declarations() -> None:
    hooks = "const { resolvedColorMode } = useContext(ColorModeContext)\nconst ref_x = useRef();\n"
    assert hook_names(hooks) == ["resolvedColorMode", "ref_x"]


def test_array_destructuring_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="addEvents"):
        hook_names("const [addEvents, connectErrors] = useContext(EventLoopContext);")


def test_renamed_and_several_names_are_all_dependencies() -> None:
    assert hook_names("const { a, b: c } = useThing()") == ["a", "c"]


def test_no_hooks_means_no_dependencies() -> None:
    assert hook_names("") == []
    assert hook_names("\n  \n") == []


def test_a_line_that_declares_nothing_readable_is_refused() -> None:
    with pytest.raises(ValueError, match="useEffect"):
        hook_names("useEffect(() => {}, [])")
