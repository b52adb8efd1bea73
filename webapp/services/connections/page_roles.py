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

Pages on the New Pages Experience list the same access as PROFILE_PLUS_* tasks
(PROFILE_PLUS_FULL_CONTROL, PROFILE_PLUS_MANAGE, ...; the Graph API's Page task enum, as Meta's
business SDKs list it); they count exactly like their classic counterparts.
"""

from __future__ import annotations

from collections.abc import Iterable

ROLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("Admin", frozenset({"MANAGE", "PROFILE_PLUS_FULL_CONTROL", "PROFILE_PLUS_MANAGE"})),
    ("Editor", frozenset({"CREATE_CONTENT", "PROFILE_PLUS_CREATE_CONTENT"})),
    ("Moderator", frozenset({"MODERATE", "PROFILE_PLUS_MODERATE"})),
    ("Advertiser", frozenset({"ADVERTISE", "PROFILE_PLUS_ADVERTISE"})),
    ("Analyst", frozenset({"ANALYZE", "PROFILE_PLUS_ANALYZE"})),
)
ACTING_TASKS = frozenset(
    {
        "MANAGE",
        "CREATE_CONTENT",
        "MODERATE",
        "PROFILE_PLUS_FULL_CONTROL",
        "PROFILE_PLUS_MANAGE",
        "PROFILE_PLUS_CREATE_CONTENT",
        "PROFILE_PLUS_MODERATE",
    }
)
# The tasks kept on the connection (facebook_page_tasks, 255 characters): those that name a role.
KEPT_TASKS = frozenset().union(*(marks for _, marks in ROLES))
TASKS_COLUMN_LENGTH = 255
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


def tasks_column(tasks: Iterable[str]) -> str:
    """The tasks as the connection keeps them: the ones that name a role, comma-separated, within the column.

    Meta lists up to two dozen tasks on a Page (messaging, insights, ...); only these decide the role.
    """
    kept: list[str] = []
    for task in (task.upper() for task in tasks):
        if task in KEPT_TASKS and task not in kept and len(",".join([*kept, task])) <= TASKS_COLUMN_LENGTH:
            kept.append(task)
    return ",".join(kept)
