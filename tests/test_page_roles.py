"""Page roles named from Meta's tasks (services/connections/page_roles.py)."""

from webapp.services.connections.page_roles import describe, role_for, tasks_enough


def test_each_role_is_named_from_its_tasks():
    assert role_for(["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE"]) == "Admin"
    assert role_for(["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT"]) == "Editor"
    assert role_for(["ANALYZE", "ADVERTISE", "MODERATE"]) == "Moderator"
    assert role_for(["ANALYZE", "ADVERTISE"]) == "Advertiser"
    assert role_for(["ANALYZE"]) == "Analyst"
    assert role_for([]) is None
    assert role_for(["MESSAGING"]) == "Other access"


def test_only_acting_tasks_are_enough_to_read_the_instagram_account():
    assert tasks_enough(["MODERATE", "ANALYZE"])
    assert tasks_enough(["manage"])
    assert not tasks_enough(["ADVERTISE", "ANALYZE"])
    assert not tasks_enough([])


def test_evidence_names_the_role_and_its_tasks():
    assert describe(["ANALYZE"]) == "Analyst (ANALYZE)"
    assert describe([]) == "no role"
