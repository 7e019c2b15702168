"""What a directory source returns for a list: the people it found, before they are folded
into recipients and kept as a snapshot, and what it left out (and why), counted.

The sources (``recipients/ldap.py`` for LDAP and Active Directory, ``recipients/graph.py`` for
Microsoft Entra ID through Microsoft Graph) implement :class:`DirectorySource`; the list
resolver and the sync use only this module, so either can be swapped without the other knowing.
A source raises :class:`dispatch.errors.DirectoryError` when the directory cannot be read, wrapped
once where the library is called, the cause kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

# Our fields -> the directory's attribute names, when a list file says nothing.
DEFAULT_ATTRIBUTES: Mapping[str, str] = MappingProxyType({"mail": "mail", "name": "displayName"})


@dataclass(frozen=True)
class DirectoryPerson:
    """One person as the directory has them (the address not yet folded)."""

    mail: str
    name: str
    source: str  # where the person came from: the entry's DN (LDAP) or the user's object id (Graph)


@dataclass(frozen=True)
class DirectoryResult:
    """Everyone a group or filter stands for, each entry once (nested groups flattened), and what
    was left out: accounts disabled in the directory and entries without a mail address."""

    people: tuple[DirectoryPerson, ...]
    disabled: int = 0
    without_mail: int = 0


class DirectorySource(Protocol):
    """A directory that can be asked who is in a group (nested groups included) or who matches
    a filter. ``attributes`` maps our fields (``mail``, ``name``) to the directory's names."""

    def group_members(self, group: str, attributes: Mapping[str, str]) -> DirectoryResult:
        """Every person in the group, members of nested groups included."""
        ...

    def matching(self, query: str, attributes: Mapping[str, str]) -> DirectoryResult:
        """Every person matching a filter (LDAP); a source without filters raises DirectoryError."""
        ...


@dataclass(frozen=True)
class DirectoryListSpec:
    """What a list file ``recipients/NAME.yaml`` with ``source: DIRECTORY`` asks for: a group (an
    LDAP DN or a Graph group id) or an LDAP filter, the attribute mapping, how much it may shrink
    in one sync before a person must accept it, and other lists it includes."""

    name: str  # the list's NAME (its file name without extension)
    display_name: str
    path: str  # the list file, as shown in messages
    directory: str  # a name under directories: in config
    group: str | None = None
    query: str | None = None  # the `filter` key (an LDAP filter)
    # A factory: a mappingproxy is unhashable before Python 3.12, which dataclasses reject as a default.
    attributes: Mapping[str, str] = field(default_factory=lambda: DEFAULT_ATTRIBUTES)
    max_shrink: float = 0.1  # a sync smaller than the last accepted snapshot by more than this is held
    include: tuple[str, ...] = ()
