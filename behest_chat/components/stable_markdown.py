"""Markdown whose elements stay the same DOM nodes while its text grows.

Reflex's markdown builds its map of element components (``h1``, ``p``, ``pre`` …) anew on
every render, and React remounts whatever a new component type renders. For the block of a
reply that grows with each piece, that replaced the block's nodes every 50 ms: a selection
in it vanished, and a press on its code block's Copy button that spanned a piece landed on
a button that was no longer there. Here the map is kept (``useMemo``) until a value read by
its hooks changes (the colour mode, for the code highlighter's theme).
"""

from __future__ import annotations

import re
from typing import Any

import reflex as rx
from reflex.utils.imports import ImportVar
from reflex_base.compiler.templates import _render_hooks
from reflex_base.vars.base import LiteralVar
from reflex_components_markdown.markdown import _MOCK_ARG, Markdown, MarkdownWrapper

# The names a hook line declares: "const { a, b } = …" or "const a = …".
_DECLARED = re.compile(r"^\s*const\s+(?:\{([^}]*)\}|([A-Za-z_$][\w$]*))\s*=", re.MULTILINE)


def hook_names(hooks: str) -> list[str]:
    """The names the hook lines declare, which the map may use: its memo's dependencies.

    Raises ``ValueError`` for a line that declares nothing this reads, so a hook added to
    the map later cannot leave a stale map behind unnoticed.
    """
    names: list[str] = []
    for line in filter(str.strip, hooks.splitlines()):
        found = _DECLARED.match(line)
        if found is None:
            raise ValueError(f"cannot tell what this markdown hook declares: {line.strip()}")
        listed, single = found.groups()
        if single:
            names.append(single)
        else:
            names += [name.split(":")[-1].strip() for name in listed.split(",") if name.strip()]
    return names


class StableMarkdown(Markdown):
    """``ReactMarkdown`` with its component map memoized (see the module's docstring)."""

    def add_imports(self) -> Any:
        return [*super().add_imports(), {"react": [ImportVar(tag="useMemo")]}]

    def _get_component_map_name(self) -> str:
        # Not Reflex's name: its function of the same map would be a second definition.
        return f"StableComponentMap_{self.component_map_hash}"

    def _get_custom_code(self) -> str | None:
        hooks: dict[str, Any] = {}
        for component_factory in self.component_map.values():
            hooks.update(component_factory(_MOCK_ARG)._get_all_hooks())
        formatted_hooks = _render_hooks(hooks)
        dependencies = ", ".join(hook_names(formatted_hooks))
        return f"""
        function {self._get_component_map_name()} () {{
            {formatted_hooks}
            return useMemo(() => (
                {LiteralVar.create(self.format_component_map())!s}
            ), [{dependencies}])
        }}
        """


def stable_markdown(text: rx.Var[str], **props: Any) -> rx.Component:
    """``rx.markdown(text, **props)`` with :class:`StableMarkdown` inside."""
    wrapper = rx.markdown(text, **props)
    inner = wrapper.children[0] if isinstance(wrapper, MarkdownWrapper) else wrapper
    assert isinstance(inner, Markdown)
    stable = StableMarkdown.create(
        text,
        component_map=props.get("component_map", {}),
        remark_plugins=inner.remark_plugins,
        rehype_plugins=inner.rehype_plugins,
    )
    if inner is wrapper:
        return stable
    wrapper.children = [stable]
    return wrapper
