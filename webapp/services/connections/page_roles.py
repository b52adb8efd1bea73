"""The merchant's role on a Facebook Page, named from the tasks Meta lists for them on it.

Meta's Pages API gives a person's access to a Page as tasks, not a role name; the familiar roles
are fixed sets of tasks (https://developers.facebook.com/docs/pages/overview#tasks):

    Admin       MANAGE, CREATE_CONTENT, MODERATE, ADVERTISE, ANALYZE
    Editor              CREATE_CONTENT, MODERATE, ADVERTISE, ANALYZE
    Moderator                           MODERATE, ADVERTISE, ANALYZE
    Advertiser                                    ADVERTISE, ANALYZE
    Analyst                                                  ANALYZE

Reading the Page's Instagram account for the shop needs one of the acting tasks (MANAGE,
CREATE_CONTENT or MODERATE); an Advertiser or Analyst can see the Page but not act for it.
"""

from __future__ import annotations

from collections.abc import Iterable

ROLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("Admin", frozenset({"MANAGE"})),
    ("Editor", frozenset({"CREATE_CONTENT"})),
    ("Moderator", frozenset({"MODERATE"})),
    ("Advertiser", frozenset({"ADVERTISE"})),
    ("Analyst", frozenset({"ANALYZE"})),
)
ACTING_TASKS = frozenset({"MANAGE", "CREATE_CONTENT", "MODERATE"})
# The weakest role that still has an acting task: what a merchant is told to ask for.
ENOUGH_ROLE = "Moderator"


def role_for(tasks: Iterable[str]) -> str | None:
    """The highest role these tasks amount to ("Admin", "Editor", ...), or None for no task at all."""
    held = {task.upper() for task in tasks}
    for role, marks in ROLES:
        if marks & held:
            return role
    return "Other access" if held else None


def tasks_enough(tasks: Iterable[str]) -> bool:
    """Whether these tasks still let the shop read the Page's Instagram account."""
    return bool(ACTING_TASKS & {task.upper() for task in tasks})


def describe(tasks: Iterable[str]) -> str:
    """A role with its tasks, for evidence: "Analyst (ANALYZE)", or "no role" when there are none."""
    listed = [task.upper() for task in tasks]
    role = role_for(listed)
    return f"{role} ({', '.join(listed)})" if role else "no role"
