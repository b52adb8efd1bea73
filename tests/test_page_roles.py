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


def test_new_pages_experience_tasks_count_like_their_classic_counterparts():
    assert role_for(["PROFILE_PLUS_FULL_CONTROL", "PROFILE_PLUS_ANALYZE"]) == "Admin"
    assert role_for(["PROFILE_PLUS_CREATE_CONTENT"]) == "Editor"
    assert role_for(["PROFILE_PLUS_ANALYZE"]) == "Analyst"
    assert tasks_enough(["PROFILE_PLUS_MODERATE"]) and not tasks_enough(["PROFILE_PLUS_ADVERTISE"])


def test_the_kept_tasks_fit_the_column_whatever_meta_lists():
    from webapp.services.connections.page_roles import TASKS_COLUMN_LENGTH, tasks_column

    every = [
        "ADVERTISE",
        "ANALYZE",
        "CASHIER_ROLE",
        "CREATE_CONTENT",
        "GLOBAL_STRUCTURE_MANAGEMENT",
        "MANAGE",
        "MANAGE_JOBS",
        "MANAGE_LEADS",
        "MESSAGING",
        "MODERATE",
        "MODERATE_COMMUNITY",
        "PAGES_MESSAGING",
        "PAGES_MESSAGING_SUBSCRIPTIONS",
        "PROFILE_PLUS_ADVERTISE",
        "PROFILE_PLUS_ANALYZE",
        "PROFILE_PLUS_CREATE_CONTENT",
        "PROFILE_PLUS_FACEBOOK_ACCESS",
        "PROFILE_PLUS_FULL_CONTROL",
        "PROFILE_PLUS_MANAGE",
        "PROFILE_PLUS_MESSAGING",
        "PROFILE_PLUS_MODERATE",
        "PROFILE_PLUS_REVENUE",
    ]
    kept = tasks_column(every)
    assert len(kept) <= TASKS_COLUMN_LENGTH and role_for(kept.split(",")) == "Admin"
    assert "MESSAGING" not in kept.split(",") and tasks_column(["manage", "MANAGE"]) == "MANAGE"
