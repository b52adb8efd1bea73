"""What each cause means for a merchant: plain words, a checklist, prevention, and notes for support.

Ids are DESIGN.md's stable taxonomy. The wording is ours; the facts come from Meta's documentation
and the platform's help article (shared/knowledge/).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum

from webapp.models import LoginPath
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME


class CauseId(StrEnum):
    """DESIGN.md's stable cause ids; members equal the strings stored in `cause` columns."""

    # Names of causes, not secrets: the S105 notes below are the password-literal check's false alarms.
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    APP_REMOVED = "app_removed"
    ACCOUNT_CHECKPOINT = "account_checkpoint"
    SESSION_INVALIDATED = "session_invalidated"
    PERMISSIONS_CHANGED = "permissions_changed"
    DATA_ACCESS_EXPIRED = "data_access_expired"
    ACCOUNT_NOT_PROFESSIONAL = "account_not_professional"
    PAGE_UNLINKED = "page_unlinked"
    INVALID_TOKEN = "invalid_token"  # noqa: S105
    RATE_LIMITED = "rate_limited"
    POLICY_BLOCK = "policy_block"
    PROVIDER_ERROR = "provider_error"
    APP_MISCONFIGURED = "app_misconfigured"
    REQUEST_ERROR = "request_error"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FacebookWords:
    """What a cause says differently to a shop that connected through Facebook Login for Business.

    Page roles, Business Manager (Meta Business Suite) and the 90-day data-access window belong to
    that path only: an Instagram Login merchant is never sent to check them. Empty fields keep the
    cause's own words.
    """

    title: str = ""
    explanation: str = ""
    checklist: tuple[str, ...] | None = None
    prevention: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Cause:
    id: CauseId
    title: str
    explanation: str
    checklist: tuple[str, ...]
    prevention: tuple[str, ...] = ()
    support_notes: str = ""
    reconnect_fixes: bool = True
    # For causes that need nothing from the merchant: said once, never offered as a step to tick.
    nothing_to_do: str = ""
    facebook: FacebookWords | None = None
    # A cause that can happen on one login path only (a Page unlinked needs a Page: Facebook Login).
    only_on: LoginPath | None = None


@dataclass(frozen=True)
class Pattern:
    """A behaviour behind a cause (e.g. many devices behind an invalidated session)."""

    id: str
    title: str
    explanation: str
    checklist: tuple[str, ...] = field(default_factory=tuple)


RECONNECT_STEP = "Press Reconnect below and log in to Instagram with the account this shop uses."
FACEBOOK_RECONNECT_STEP = (
    "Press Reconnect below, log in with Facebook and choose the Page linked to this shop's Instagram account."
)
# Facebook Login: a Page can belong to a business in Meta Business Suite (formerly Business Manager),
# whose admins give people their access to it. Said only to shops on that path.
BUSINESS_ACCESS_STEP = (
    "If the Page belongs to a business in Meta Business Suite (Business Manager), ask one of the business's "
    "admins to check, under Settings, then People, that you still have full control of the Page."
)

# Meta lets an app read an account's data for this long after the owner last used it; connecting renews it.
DATA_ACCESS_WINDOW = timedelta(days=90)

CAUSES: dict[str, Cause] = {
    CauseId.TOKEN_EXPIRED: Cause(
        CauseId.TOKEN_EXPIRED,
        "The connection reached the end of its life",
        f"Instagram connections last at most {LONG_LIVED_TOKEN_LIFETIME.days} days unless they are renewed. "
        "This one was not renewed in "
        "time, so Instagram stopped accepting it.",
        (RECONNECT_STEP, "After reconnecting, check back tomorrow: the status should say Connected."),
        ("We renew connections automatically a week after each renewal; if you see this again, tell support.",),
        "Look at the refresh attempts in the timeline: if our automatic refresh failed, the reason is there.",
        facebook=FacebookWords(
            title="Facebook says the connection's session expired",
            explanation="Facebook reported that the login session behind this connection expired. Connections "
            "made through a Facebook Page do not end by date on their own, so a session ended early by Facebook "
            "is the likely reason.",
            checklist=(
                FACEBOOK_RECONNECT_STEP,
                "After reconnecting, check back tomorrow: the status should say Connected.",
            ),
            prevention=("If you see this again soon after reconnecting, tell support.",),
        ),
    ),
    CauseId.PASSWORD_CHANGED: Cause(
        CauseId.PASSWORD_CHANGED,
        "The Instagram password was changed",
        "When the Instagram account's password changes, Instagram ends every connection made before the "
        "change, including this one. Instagram gives the same answer when Meta resets the account's "
        "sessions for security reasons, so a password change is the likely reason, not the only one.",
        (
            "If you changed the password yourself, nothing is wrong: just reconnect.",
            "If you did not change it, secure the account first: change the password in the Instagram app "
            "and turn on two-factor authentication.",
            RECONNECT_STEP,
        ),
        (
            "Change the password only when you need to, and reconnect here right after you do.",
            "Share the password with as few people as possible.",
        ),
        "Code 190, subcode 460. Ask whether anyone changed the password or reset it after a suspicious login.",
        facebook=FacebookWords(
            title="The Facebook password was changed",
            explanation="When the password of the Facebook account that connected the shop changes, Facebook "
            "ends every connection made before the change, including this one. Facebook gives the same answer "
            "when Meta resets the account's sessions for security reasons, so a password change is the likely "
            "reason, not the only one.",
            checklist=(
                "If you changed the password yourself, nothing is wrong: just reconnect.",
                "If you did not change it, secure the account first: change the Facebook password and turn on "
                "two-factor authentication.",
                FACEBOOK_RECONNECT_STEP,
            ),
            prevention=(
                "Change the password only when you need to, and reconnect here right after you do.",
                "Give team members their own access to the Page through Meta Business Suite instead of sharing "
                "the password.",
            ),
        ),
    ),
    CauseId.APP_REMOVED: Cause(
        CauseId.APP_REMOVED,
        "Our app was removed from the Instagram account",
        "Someone removed this app from the account's list of connected apps and websites, which cancels its "
        "access at once.",
        (
            "In the Instagram app, open Settings, then Website permissions or Apps and websites, and check "
            "what is listed.",
            RECONNECT_STEP,
        ),
        ("Do not remove the app from the account's authorised apps while the shop uses Instagram.",),
        "Code 190, subcode 458, or Meta's deauthorize callback. Certain when the callback arrived.",
        facebook=FacebookWords(
            title="Our app was removed from the Facebook account",
            explanation="Someone removed this app from the Facebook account's business integrations (or its "
            "apps and websites), which cancels its access to the Page and its Instagram account at once.",
            checklist=(
                "On Facebook, open Settings and privacy, then Settings, then Business integrations, and check "
                "what is listed.",
                BUSINESS_ACCESS_STEP,
                FACEBOOK_RECONNECT_STEP,
            ),
            prevention=(
                "Do not remove the app from the Facebook account's business integrations while the "
                "shop uses Instagram.",
            ),
        ),
    ),
    CauseId.ACCOUNT_CHECKPOINT: Cause(
        CauseId.ACCOUNT_CHECKPOINT,
        "Instagram wants you to confirm the account",
        "Instagram's security systems paused the account (a checkpoint) and asks its owner to log in and "
        "confirm something, such as their identity or a suspicious login. Until that is done, connected apps "
        "are locked out.",
        (
            "Open the Instagram app (and facebook.com if the account is linked to Facebook) and follow any "
            "message asking you to confirm your identity or review a login.",
            "Then press Test connection now: once the checkpoint is cleared the old connection often works "
            "again. If not, press Reconnect.",
        ),
        ("Use the account from few devices and places; avoid logging in through VPNs or shared computers.",),
        "Codes 190/459, 190/490, 190/464, or 25/2207050. The merchant must act in the Instagram app.",
        facebook=FacebookWords(
            title="Facebook wants you to confirm the account",
            explanation="Facebook's security systems paused the account that connected the shop (a checkpoint) "
            "and ask its owner to log in and confirm something, such as their identity or a suspicious login. "
            "Until that is done, connected apps are locked out.",
            checklist=(
                "Log in at facebook.com with the account that connected the shop and follow any message asking "
                "you to confirm your identity or review a login.",
                "Then press Test connection now: once the checkpoint is cleared the old connection often works "
                "again. If not, press Reconnect.",
            ),
        ),
    ),
    CauseId.SESSION_INVALIDATED: Cause(
        CauseId.SESSION_INVALIDATED,
        "Instagram ended the login session",
        "Instagram ended the session this connection belongs to. That happens when the account logs out "
        "everywhere, or when Meta resets sessions for security reasons, for example after logins from many "
        "devices or places in a short time.",
        (
            RECONNECT_STEP,
            "Check Settings, then Security, then Login activity in the Instagram app for logins you do not recognise.",
        ),
        (
            "Avoid logging in and out often, and switching between several accounts on the same device.",
            "Do not share the login with other people or tools.",
        ),
        "Code 190, subcode 467. Compare the shop's reconnect history (networks, browsers) in the timeline.",
        facebook=FacebookWords(
            title="Facebook ended the login session",
            explanation="Facebook ended the session this connection belongs to. That happens when the account "
            "logs out everywhere, or when Meta resets sessions for security reasons, for example after logins "
            "from many devices or places in a short time.",
            checklist=(
                FACEBOOK_RECONNECT_STEP,
                "On Facebook, open Settings, then Accounts Center, then Password and security, then Where you're "
                "logged in, and look for logins you do not recognise.",
            ),
            prevention=(
                "Avoid logging in and out often, and switching between several accounts on the same device.",
                "Do not share the login; give people their own access to the Page through Meta Business Suite.",
            ),
        ),
    ),
    CauseId.PERMISSIONS_CHANGED: Cause(
        CauseId.PERMISSIONS_CHANGED,
        "A permission was removed",
        "The connection no longer has a permission it needs: a permission was turned off when connecting, "
        "or it was taken back later in the Instagram account's settings.",
        (
            "In the Instagram app, open Settings, then Website permissions or Apps and websites, and check "
            "what this app may still do.",
            "Press Reconnect and leave every requested permission switched on.",
        ),
        ("Leave this app's permissions switched on while the shop uses Instagram.",),
        "Codes 10, 200-299 or 190/492. Compare the granted permissions in the technical details.",
        facebook=FacebookWords(
            title="A permission or Page role was removed",
            explanation="The connection no longer has a permission it needs. Either a permission was turned off "
            "when connecting, or the role of the person who connected on the linked Facebook Page or business "
            "changed.",
            checklist=(
                "Check that you still have full control of the Facebook Page linked to the Instagram account: "
                "on the Page, open Settings, then Page access (or Meta Business Suite, Settings, People). "
                "The shop needs you to be an Admin, Editor or Moderator there.",
                BUSINESS_ACCESS_STEP,
                "Press Reconnect and leave every requested permission and Page switched on.",
            ),
            prevention=(
                "Change Page roles with care; the person who connected the shop needs to keep their role.",
                "Before someone leaves the business, have another admin reconnect the shop with their own login.",
            ),
        ),
    ),
    CauseId.DATA_ACCESS_EXPIRED: Cause(
        CauseId.DATA_ACCESS_EXPIRED,
        f"Access lapsed after {DATA_ACCESS_WINDOW.days} days without use",
        f"Meta lets an app read an account's data for {DATA_ACCESS_WINDOW.days} days after the owner last used "
        "it. Instagram says that period ran out.",
        (RECONNECT_STEP,),
        (f"Reconnecting starts the {DATA_ACCESS_WINDOW.days} days again.",),
        "Code 190, subcode 493. Meta documents the window for Facebook Login; on Instagram Login it is rare.",
        facebook=FacebookWords(
            explanation=f"Meta lets an app read a Page's and its Instagram account's data for "
            f"{DATA_ACCESS_WINDOW.days} days after the person who connected last renewed access. That period "
            "ran out.",
            checklist=(
                "Press Reconnect below and log in with the same Facebook account: that renews access for "
                f"another {DATA_ACCESS_WINDOW.days} days. Keep the same Page selected.",
            ),
            prevention=(
                f"We remind you before the {DATA_ACCESS_WINDOW.days} days run out; press Renew access on the "
                "dashboard or in the mail when it comes.",
            ),
        ),
    ),
    CauseId.ACCOUNT_NOT_PROFESSIONAL: Cause(
        CauseId.ACCOUNT_NOT_PROFESSIONAL,
        "The Instagram account is no longer a professional account",
        "Only Business and Creator accounts can be connected to a shop. This account was switched to a "
        "personal account, so Instagram no longer lets the shop use it.",
        (
            "In the Instagram app, open Settings, then Account type and tools, and switch back to a "
            "professional account (Business or Creator).",
            RECONNECT_STEP,
        ),
        ("Keep the account professional; switching it to personal ends every shop connection.",),
        'Code 10 "The user is not an Instagram Business", or account_type from /me no longer BUSINESS or '
        "MEDIA_CREATOR.",
        facebook=FacebookWords(
            explanation="Only Business and Creator accounts can be connected to a shop. The Instagram account "
            "linked to your Facebook Page was switched to a personal account, so the shop can no longer use it "
            "through the Page.",
        ),
    ),
    CauseId.PAGE_UNLINKED: Cause(
        CauseId.PAGE_UNLINKED,
        "The Instagram account is no longer linked to your Facebook Page",
        "This shop reaches Instagram through a Facebook Page. Meta says the Instagram account is no longer "
        "linked to that Page, or the Page is no longer one you manage (it was unlinked, deleted or unpublished), "
        "so the shop cannot reach the account through it.",
        (
            "On Facebook, open the shop's Page, then Settings, then Linked accounts, and check that the shop's "
            "Instagram account is listed. If it is not, choose Connect account and log in to Instagram.",
            "Or, in Meta Business Suite, open Settings, then Instagram accounts, and connect the account to the Page.",
            "Check that the Page is still published and that you still manage it.",
            FACEBOOK_RECONNECT_STEP,
        ),
        (
            "Keep the Instagram account linked to the Page the shop uses; unlinking it, or deleting or "
            "unpublishing the Page, ends the shop's connection.",
        ),
        "Facebook Login only: the Page has no instagram_business_account (connected_instagram_account), "
        "/me/accounts no longer lists it, or it was deleted or unpublished. Check the Page and its link first.",
        only_on=LoginPath.FACEBOOK,
    ),
    CauseId.INVALID_TOKEN: Cause(
        CauseId.INVALID_TOKEN,
        "Instagram no longer accepts this connection",
        "Instagram rejected the connection without saying exactly why. The usual reasons are a password "
        "change, the app being removed, or a security reset of the account's sessions.",
        (RECONNECT_STEP, "If it breaks again within days, contact support with the time it happened."),
        ("Avoid sharing the login and frequent log-outs; both make Instagram reset sessions.",),
        "Code 190 without a subcode. Check the timeline for a deauthorize callback or repeated reconnects.",
        facebook=FacebookWords(
            title="Facebook no longer accepts this connection",
            explanation="Facebook rejected the connection without saying exactly why. The usual reasons are a "
            "password change, the app being removed, a change to your role on the Page, or a security reset of "
            "the account's sessions.",
            prevention=("Avoid sharing the login and frequent log-outs; both make Facebook reset sessions.",),
        ),
    ),
    CauseId.RATE_LIMITED: Cause(
        CauseId.RATE_LIMITED,
        "Instagram asked us to slow down",
        "Instagram limits how many requests apps may make in an hour. We reached that limit and paused; "
        "nothing is wrong with your account and nothing needs doing.",
        (),
        (),
        "Codes 4, 17, 32, 613, 341 or 80001-80006, or usage headers near 100%. Check the fleet for app-wide pauses.",
        reconnect_fixes=False,
        facebook=FacebookWords(
            title="Facebook asked us to slow down",
            explanation="Facebook limits how many requests apps may make in an hour. We reached that limit and "
            "paused; nothing is wrong with your account or your Page and nothing needs doing.",
        ),
        nothing_to_do="We resume automatically as soon as Instagram allows.",
    ),
    CauseId.POLICY_BLOCK: Cause(
        CauseId.POLICY_BLOCK,
        "Instagram temporarily blocked an action",
        "Instagram temporarily blocked some actions of this account for a policy reason. Blocks like this "
        "usually lift by themselves.",
        (
            "Open the Instagram app and look for a notice about restricted activity.",
            "Wait for the block to lift; reconnecting does not help.",
        ),
        ("Avoid posting or messaging in large bursts.",),
        "Code 368 (or 4/2207051 for spam restrictions).",
        reconnect_fixes=False,
    ),
    CauseId.PROVIDER_ERROR: Cause(
        CauseId.PROVIDER_ERROR,
        "Instagram is having trouble",
        "Instagram did not answer properly (an outage, a time-out, or an internal error on Meta's side). "
        "This is temporary and your connection is still valid.",
        (),
        (),
        "Codes 1 and 2, HTTP 5xx, time-outs, is_transient: true. Check Meta's status page if many shops show it.",
        reconnect_fixes=False,
        facebook=FacebookWords(
            title="Facebook is having trouble",
            explanation="Facebook did not answer properly (an outage, a time-out, or an internal error on Meta's "
            "side). This is temporary and your connection is still valid.",
        ),
        nothing_to_do="We retry automatically, with growing pauses.",
    ),
    CauseId.APP_MISCONFIGURED: Cause(
        CauseId.APP_MISCONFIGURED,
        "A setting on our side needs fixing",
        "Something in our own app's setup with Meta is wrong, so Instagram refuses our requests. Our team "
        "needs to fix it; you do not need to do anything.",
        (),
        (),
        "Check the app id and secret (Instagram app, not Facebook app), the redirect URI, scopes, "
        "TOKEN_ENCRYPTION_KEYS and tester roles.",
        reconnect_fixes=False,
        nothing_to_do="Our team has been told and fixes it on our side.",
    ),
    CauseId.REQUEST_ERROR: Cause(
        CauseId.REQUEST_ERROR,
        "One of our requests was not accepted",
        "Instagram did not accept one request of ours (for example an outdated field). It says nothing "
        "about your connection, which stays valid.",
        (),
        (),
        "Code 100 and similar request errors: a bug or an API version change on our side.",
        reconnect_fixes=False,
        nothing_to_do="Your connection stays valid; we handle it on our side.",
    ),
    CauseId.UNKNOWN: Cause(
        CauseId.UNKNOWN,
        "We could not tell what happened",
        "Instagram sent an answer we do not recognise. We keep trying, and our team can look into it.",
        ("Press Test connection now in a few minutes.", "If the problem stays, contact support."),
        (),
        "No code, subcode or wording in Meta's answer is one we know. Send engineering the whole error, with "
        "its fbtrace_id if it has one, so the classifier can learn it.",
        reconnect_fixes=False,
    ),
}

PATTERNS: dict[str, Pattern] = {
    "many_devices": Pattern(
        "many_devices",
        "Logins from many devices or places",
        "This shop connected from several networks and browsers in a short time. Meta treats that as a "
        "security risk and resets sessions.",
        (
            "From now on, connect and log in from one computer on your usual network.",
            "If several people manage the account, do not share one login among them.",
        ),
    ),
    "frequent_reconnects": Pattern(
        "frequent_reconnects",
        "Frequent log-ins and log-outs",
        "This connection was re-made several times in a short period. Logging in and out often, or switching "
        "accounts on one device, makes Meta reset sessions.",
        ("Stay logged in to Instagram on your phone; avoid switching accounts in the same app.",),
    ),
}


def words_for(cause_id: str, path: str | None) -> Cause:
    """The cause as told to a shop on its login path: Facebook Login's words where they differ."""
    cause = CAUSES[cause_id]
    words = cause.facebook
    if path != LoginPath.FACEBOOK:
        return cause
    if words is None:
        words = FacebookWords()  # the cause's own words, but Reconnect still means logging in with Facebook
    checklist = words.checklist if words.checklist is not None else cause.checklist
    return replace(
        cause,
        title=words.title or cause.title,
        explanation=words.explanation or cause.explanation,
        checklist=tuple(FACEBOOK_RECONNECT_STEP if step == RECONNECT_STEP else step for step in checklist),
        prevention=words.prevention if words.prevention is not None else cause.prevention,
        facebook=None,
    )
