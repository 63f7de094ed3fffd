"""ModSecurity 2.9's Aho-Corasick matcher (`acmp.c`), step for step, for `@pm`'s answer.

ModSecurity's automaton is not the textbook one: a node's fail link is its parent's fail
link's child for the same letter, or the root, one step only (`acmp_connect_fail_branches`),
never the longest suffix further down the chain. So after a partial phrase it can miss a
phrase that a full automaton finds: with `secrets.json` and `.env` in the list,
`secrets.env` holds `.env` but ModSecurity does not report it (the state `secrets.` fails to
the root, not to `.`). Every match it does report is a real occurrence, so a search for every
occurrence of every phrase (Pm's RE2 Set) is a sound prefilter: this walk runs only on a value
that search matched.

Letters are bytes, lower-cased in ASCII (acmp_create without ACMP_FLAG_UTF8 or
ACMP_FLAG_CASE_SENSITIVE, apr_tolower in the C locale).
"""

from __future__ import annotations

from collections.abc import Iterable

_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


class _Node:
    __slots__ = ("children", "fail", "is_last", "o_match", "text")

    def __init__(self, text: bytes) -> None:
        self.children: dict[int, _Node] = {}
        self.fail: _Node | None = None
        self.is_last = False
        self.o_match: _Node | None = None
        self.text = text  # the phrase prefix as first written (acmp's node->text)


class ModsecAcmp:
    def __init__(self, phrases: Iterable[bytes]) -> None:
        self.root = _Node(b"")
        for phrase in phrases:
            node = self.root
            for i, letter in enumerate(phrase.translate(_LOWER)):
                child = node.children.get(letter)
                if child is None:
                    child = node.children[letter] = _Node(phrase[: i + 1])
                node = child
            if phrase:
                node.is_last = True
        self._connect_fail_branches()

    def _connect_fail_branches(self) -> None:
        root = self.root
        root.fail = root
        level = list(root.children.values())
        for child in level:
            child.fail = root
        parents = {id(child): root for child in level}
        while level:
            following = []
            for node in level:
                parent = parents[id(node)]
                if parent is not root:
                    assert parent.fail is not None
                    letter = next(k for k, v in parent.children.items() if v is node)
                    node.fail = parent.fail.children.get(letter, root)
                for child in node.children.values():
                    parents[id(child)] = node
                    following.append(child)
            level = following
        # acmp_connect_other_matches: the first phrase end down the fail chain.
        stack = [root]
        while stack:
            node = stack.pop()
            for child in node.children.values():
                other = child.fail
                while other is not None and other is not root:
                    if other.is_last:
                        child.o_match = other
                        break
                    other = other.fail
                stack.append(child)

    def first_match(self, value: bytes) -> bytes | None:
        """acmp_process_quick: the text ModSecurity reports for its first match, or None."""
        root = self.root
        node = root
        for letter in value.translate(_LOWER):
            go_to = None
            while go_to is None:
                go_to = node.children.get(letter)
                if go_to is not None and go_to.is_last:
                    return go_to.text
                if node is root:
                    break
                if go_to is None:
                    assert node.fail is not None
                    node = node.fail
            if go_to is not None:
                node = go_to
            if node.o_match is not None:
                return node.text
        return None
