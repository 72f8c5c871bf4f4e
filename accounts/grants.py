"""Who may give whom which powers: superuser and staff status, roles (groups) and permissions.

Django lets anyone allowed to change users give any account (their own included) every power, and
anyone allowed to change groups give every member of a role any permission: an analyst given
"change user" to reset colleagues' passwords made themselves superuser. Here:

- only a superuser gives or takes superuser status, the staff status of a superuser, Confidential
  access (a need-to-know decision: the role, its permission, or a role carrying it, one renamed
  say), changes a role's permissions (a grant to every member at once), renames one of the roles
  incidents.roles keeps or gives a role one of their names (each migrate gives the role of that
  name its permissions), deletes a role that has members, or changes, sets the password of, makes
  a setup link for, removes the second factor of, clears the failed sign-ins of or deletes a
  superuser's account or one holding permissions the actor lacks (what its roles and its own
  permissions give, active or not: `held_permissions`);
- anyone else gives or takes only roles and permissions they hold themselves;
- nobody changes their own roles, permissions, superuser or staff status: another administrator
  must;
- nobody deactivates, demotes or deletes the last active superuser;
- a role or a permission goes only with Staff status, which the admin's login needs, unless the
  account is said to be a partner tool's, used through API tokens only.

Every door that changes accounts or roles (the admin's users, groups, second factors and lockout
records, their list actions) asks these functions and refuses, naming the field, before it writes;
each grant and removal is recorded in the admin's history of the account (Django's LogEntry, where
its other changes are)."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from pghistory.models import Context

from incidents import roles
from incidents.models import ConfidentialAccess, Release


@dataclass(frozen=True)
class Powers:
    """What an account may do: its flags, its roles and its own permissions."""

    is_superuser: bool = False
    is_staff: bool = False
    is_active: bool = True
    groups: frozenset[Group] = frozenset()
    permissions: frozenset[Permission] = frozenset()


def account_powers(account) -> Powers:
    """The powers `account` holds in the database (two queries; none for an unsaved account)."""
    if account is None or account.pk is None:
        return Powers()
    return Powers(
        is_superuser=account.is_superuser,
        is_staff=account.is_staff,
        is_active=account.is_active,
        groups=frozenset(account.groups.all()),
        permissions=frozenset(account.user_permissions.select_related("content_type")),
    )


def _codes(permissions: Iterable[Permission]) -> set[str]:
    return {f"{permission.content_type.app_label}.{permission.codename}" for permission in permissions}


def held_permissions(account) -> set[str]:
    """Every permission `account` holds ("app_label.codename"), through its roles or its own, active
    or not; every permission there is for a superuser. The measure of an account's power, for
    whoever acts and for the account acted on alike. Not Django's get_all_permissions(), which is
    empty for an inactive account: a deactivated Reviewer with Confidential access held "nothing the
    manager lacked", so whoever could change users set its password, removed its second factor and
    made it active again, with its roles. One query (none for an unsaved account)."""
    if account is None or account.pk is None:
        return set()
    permissions = Permission.objects.all()
    if not account.is_superuser:
        permissions = permissions.filter(Q(user__pk=account.pk) | Q(group__user__pk=account.pk))
    return {f"{app}.{code}" for app, code in permissions.values_list("content_type__app_label", "codename")}


def _group_codes(group: Group) -> set[str]:
    return _codes(group.permissions.select_related("content_type"))


def _names(items) -> str:
    return ", ".join(sorted(str(item) for item in items))


def _own(added: bool, what: str) -> str:
    change = f"give yourself {what}" if added else f"take {what} from yourself"
    return f"You cannot {change}: another administrator must."


# Seeing confidential records is a need-to-know decision of a superuser's, however it is given: the
# Confidential access role, the permission itself, or another role carrying it (one renamed).
CONFIDENTIAL_PERMISSION = "incidents.view_confidential"
CONFIDENTIAL_REFUSAL = f"Only a superuser may give or take {roles.CONFIDENTIAL_ACCESS}, as a role or a permission."


def _opens_confidential(codes: set[str]) -> bool:
    return CONFIDENTIAL_PERMISSION in codes


def _is_confidential_role(group: Group) -> bool:
    return group.name == roles.CONFIDENTIAL_ACCESS or _opens_confidential(_group_codes(group))


def _others_remain_superusers(account) -> bool:
    """Whether an active superuser other than `account` exists. Locks the active superusers' rows
    until the transaction ends (the admin's changes and deletions each run in one), so that two
    superusers deactivating each other at once cannot both succeed."""
    superusers = get_user_model().objects.select_for_update().filter(is_superuser=True, is_active=True)
    return any(pk != account.pk for pk in superusers.values_list("pk", flat=True))


def account_change_refusals(*, actor, account, before: Powers, after: Powers) -> dict[str, list[str]]:
    """Why `actor` may not change `account` (None or unsaved: a new account) from `before` to
    `after`, by field (`None` for the account as a whole); empty when they may. Reads the groups'
    permissions (one query each changed role) and the active superusers."""
    refusals: dict[str, list[str]] = {}

    def refuse(field, message):
        refusals.setdefault(field, []).append(message)

    own = account is not None and account.pk is not None and account.pk == actor.pk
    granter = actor.is_superuser
    if not own and account is not None and (refusal := account_control_refusal(actor=actor, account=account)):
        refuse(None, refusal)
        return refusals

    if after.is_superuser != before.is_superuser:
        if own:
            refuse("is_superuser", _own(after.is_superuser, "superuser status"))
        elif not granter:
            refuse("is_superuser", "Only a superuser may give or take superuser status.")
    if after.is_staff != before.is_staff:
        if own:
            refuse("is_staff", _own(after.is_staff, "staff status"))
        elif not granter and (before.is_superuser or after.is_superuser):
            refuse("is_staff", "Only a superuser may change the staff status of a superuser.")

    added_groups, removed_groups = after.groups - before.groups, before.groups - after.groups
    if added_groups or removed_groups:
        if own:
            refuse("groups", _own(bool(added_groups), "a role"))
        elif not granter:
            changed = added_groups | removed_groups
            confidential = {group for group in changed if _is_confidential_role(group)}
            if confidential:
                refuse("groups", CONFIDENTIAL_REFUSAL)
            held = held_permissions(actor)
            beyond = [group for group in changed - confidential if _group_codes(group) - held]
            if beyond:
                refuse(
                    "groups",
                    f"You may give or take only roles whose permissions you hold yourself, not {_names(beyond)}.",
                )

    added_permissions = after.permissions - before.permissions
    removed_permissions = before.permissions - after.permissions
    if added_permissions or removed_permissions:
        if own:
            refuse("user_permissions", _own(bool(added_permissions), "a permission"))
        elif not granter:
            changed = added_permissions | removed_permissions
            if _opens_confidential(_codes(changed)):
                refuse("user_permissions", CONFIDENTIAL_REFUSAL)
            held = held_permissions(actor)
            beyond = [permission for permission in changed if _codes([permission]) - held]
            if beyond:
                refuse(
                    "user_permissions",
                    f"You may give or take only permissions you hold yourself, not {_names(beyond)}.",
                )

    stays_superuser = after.is_superuser and after.is_active
    if before.is_superuser and before.is_active and not stays_superuser and not _others_remain_superusers(account):
        field = "is_active" if not after.is_active else "is_superuser"
        refuse(field, "This is the last active superuser: make another account superuser first.")
    return refusals


def role_without_staff_refusals(*, before: Powers, after: Powers, api_only: bool) -> dict[str, list[str]]:
    """Why an account may not hold `after`'s roles or permissions without Staff status, by field:
    only staff sign in to the admin (and pass a second factor, which lets them see drafts and
    confidential records), so a role given to an account that is not staff, or staff status taken
    from one holding a role, left a colleague who could not sign in, and saved without a word. A
    partner tool's account uses its role through API tokens only, where it reads only what anyone
    may: its administrator says so (`api_only`, the users' admin's "API only",
    ticked already on the page of an account kept so). No query."""
    if after.is_staff or after.is_superuser or api_only or not (after.groups or after.permissions):
        return {}
    field, what = ("groups", "role") if after.groups else ("user_permissions", "permission")
    partner = f"For a partner tool's account, which uses its {what}s through API tokens only, tick API only."
    if before.is_staff:
        return {
            "is_staff": [
                f"Without Staff status this account cannot sign in to the admin, where its {what}s work: keep "
                f"Staff status, or remove its {what}s. {partner}"
            ]
        }
    return {
        field: [
            f"A {what} works in the admin only with Staff status: tick Staff status, or remove the {what}. {partner}"
        ]
    }


def staff_without_role(powers: Powers) -> bool:
    """Whether an account with `powers` is staff who can do nothing: it signs in to the admin,
    which shows it no screen, since it holds no role and no permission (Confidential access alone
    widens what a role shows; it opens nothing). One query each role."""
    if not powers.is_staff or powers.is_superuser:
        return False
    codes = _codes(powers.permissions).union(*(_group_codes(group) for group in powers.groups))
    return not codes - {CONFIDENTIAL_PERMISSION}


def account_control_refusal(
    *, actor, account, action: str = "change", actor_held: set[str] | None = None
) -> str | None:
    """Why `actor` may not `action` (change, delete, set the password of, make a setup link for)
    `account` as a whole, or None: whoever took over an account holding more than they do (its
    password set, a setup link for its first app) would hold its powers. A superuser's account is
    a superuser's; another's needs every permission it holds (`held_permissions`), active or not:
    a deactivated account holds its roles still, and whoever controls it may make it active again
    (three queries, two when `actor_held`, `held_permissions(actor)`, is given; none for a
    superuser actor or a new account)."""
    if actor.is_superuser or account.pk is None or account.pk == actor.pk:
        return None
    # As the database holds it: an account's powers are the stored ones, not a form's unsaved edits.
    account = get_user_model().objects.filter(pk=account.pk).first() or account
    if account.is_superuser:
        return f"Only a superuser may {action} a superuser's account."
    beyond = sorted(held_permissions(account) - (held_permissions(actor) if actor_held is None else actor_held))
    if beyond:
        return (
            f"Only a superuser may {action} {account.get_username()}'s account: it holds permissions you do not "
            f"({', '.join(beyond[:3])}{', …' if len(beyond) > 3 else ''})."
        )
    return None


def accounts_control_refusal(*, actor, accounts: Iterable, action: str) -> str | None:
    """The first reason `actor` may not `action` one of `accounts` (`account_control_refusal`), or
    None. The actor's permissions are read once, not once an account."""
    actor_held = None if actor.is_superuser else held_permissions(actor)
    for account in accounts:
        if refusal := account_control_refusal(actor=actor, account=account, action=action, actor_held=actor_held):
            return refusal
    return None


def account_delete_refusal(*, actor, accounts: Iterable) -> str | None:
    """Why `actor` may not delete `accounts`, or None. Locks the active superusers' rows (see
    `_others_remain_superusers`)."""
    accounts = list(accounts)
    if refusal := accounts_control_refusal(actor=actor, accounts=accounts, action="delete"):
        return refusal
    doomed = {account.pk for account in accounts}
    superusers = set(
        get_user_model()
        .objects.select_for_update()
        .filter(is_superuser=True, is_active=True)
        .values_list("pk", flat=True)
    )
    if superusers & doomed and not superusers - doomed:
        return "This would delete the last active superuser: make another account superuser first."
    if recorded := _recorded_acting(doomed):
        return (
            f"{_names(account.get_username() for account in accounts if account.pk in recorded)} made changes "
            "that the history records by their account (who gave whom which role, who changed a record, who "
            "froze a release, who read a confidential record): deleting it would erase those records or leave "
            "them naming no one. Deactivate "
            "the account instead (untick Active): it can no longer sign in, and the history keeps who did what."
        )
    return None


def _recorded_acting(account_ids: set[int]) -> set[int]:
    """Of `account_ids`, those whose acts a record names: the admin's history (Django's LogEntry, the
    grants among it, deleted with its author's account), the records' history (pghistory's context,
    which keeps only the account's id: a deleted one read as "(system)"), releases (immutable,
    naming who froze them: deleting the account failed on that), and the record of confidential
    reads (append-only, naming each reader: a reader's rename had it name another for their
    reads). Four queries; the context's without an index, over its whole table, for the rare
    deletion or rename of an account."""
    return (
        set(LogEntry.objects.filter(user_id__in=account_ids).values_list("user_id", flat=True).distinct())
        | set(Release.objects.filter(created_by_id__in=account_ids).values_list("created_by_id", flat=True))
        | set(ConfidentialAccess.objects.filter(user_id__in=account_ids).values_list("user_id", flat=True).distinct())
        | {
            int(user_id)
            for user_id in Context.objects.filter(metadata__user__in=list(account_ids))
            .values_list("metadata__user", flat=True)
            .distinct()
        }
    )


def account_rename_refusal(*, account) -> str | None:
    """Why `account` may not take another username, or None: once a record names it as who acted
    (`_recorded_acting`), the history, the admin's log and an incident's `created_by`/`updated_by`
    say who did what by its name, read at every showing. Renamed, they all said the new name of
    changes made under the old, and staff's incidents showed another writer at the same version,
    so a staff partner's copy kept the old. A new account takes a new name; this one keeps it."""
    if account.pk is None or not _recorded_acting({account.pk}):
        return None
    return (
        f"{account.get_username()} made changes that the history records by this name (or read confidential "
        "records, which their record names it by): renamed, every record of who did what would name it "
        "otherwise. Make a new account with the new name instead, "
        "and deactivate this one (untick Active)."
    )


def account_password_refusal(*, actor, account) -> str | None:
    """Why `actor` may not set `account`'s password, or None (`account_control_refusal`)."""
    return account_control_refusal(actor=actor, account=account, action="set the password of")


def second_factor_removal_refusal(*, actor, devices: Iterable) -> str | None:
    """Why `actor` may not delete `devices` (authenticator apps, recovery codes), or None: an account
    without its second factor is a step from being taken over (a setup link, a password reset, and
    whoever made them sets up their own phone), so it is `account_control_refusal` of each owner.
    One query for the owners."""
    owners = get_user_model().objects.filter(pk__in={device.user_id for device in devices}).order_by("pk")
    return accounts_control_refusal(actor=actor, accounts=owners, action="remove the second factor of")


def failed_sign_ins_clearing_refusal(*, actor, usernames: Iterable[str]) -> str | None:
    """Why `actor` may not delete the lockout's counts of failed sign-ins at `usernames`
    (django-axes' attempts), or None: clearing them lets whoever is guessing an account's password
    go on guessing, so it is `account_control_refusal` of each account named; a name that is no
    account's protects none. One query for the accounts."""
    User = get_user_model()
    accounts = User.objects.filter(**{f"{User.USERNAME_FIELD}__in": set(usernames)}).order_by("pk")
    return accounts_control_refusal(actor=actor, accounts=accounts, action="clear the failed sign-ins of")


def _role_name_refusals(*, group, name: str) -> list[str]:
    """Why a non-superuser may not name `group` (unsaved: a new role) `name`. After each migrate,
    incidents.roles.ensure_roles gives whichever role then bears one of its names (Viewer,
    Reviewer…) exactly that role's permissions: renaming Reviewer away, then Viewer to Reviewer,
    made every viewer a reviewer at the next deploy. One query for a saved role's name."""
    before = Group.objects.filter(pk=group.pk).values_list("name", flat=True).first() if group.pk else None
    refusals = []
    if name != before and before in roles.ROLE_PERMISSIONS:
        refusals.append(
            f"Only a superuser may rename {before}: each migrate gives the role named {before} its permissions."
        )
    if name != before and name in roles.ROLE_PERMISSIONS:
        refusals.append(
            f"Only a superuser may name a role {name}: each migrate gives the role named {name} its permissions."
        )
    return refusals


def group_change_refusals(
    *, actor, group, name: str | None = None, permissions: Iterable[Permission] | None = None
) -> dict[str, list[str]]:
    """Why `actor` may not give `group` (unsaved: a new role) `name` and `permissions` (either None:
    unchanged), by field. A role's permissions are every member's: changing them is a grant to
    each, which only a superuser may make; and so is the name of one of incidents.roles' roles
    (`_role_name_refusals`)."""
    if actor.is_superuser:
        return {}
    refusals = {}
    if name is not None and (name_refusals := _role_name_refusals(group=group, name=name)):
        refusals["name"] = name_refusals
    before = set(group.permissions.all()) if group.pk is not None and permissions is not None else set()
    if permissions is not None and set(permissions) != before:
        refusals["permissions"] = [
            "Only a superuser may change a role's permissions: it gives them to, or takes them from, every member."
        ]
    return refusals


def group_delete_refusal(*, actor, groups: Iterable[Group]) -> str | None:
    """Why `actor` may not delete `groups`, or None: deleting a role takes it from every member."""
    if actor.is_superuser:
        return None
    held = [group for group in groups if group.user_set.exists()]
    if held:
        return f"Only a superuser may delete a role that accounts hold: {_names(held)}."
    return None


def role_deletion_record(*, actor, groups: Iterable[Group]) -> None:
    """Records in each member's history the roles of `groups` they lose as they are deleted (Django
    deletes the memberships without a word): "Took role: Field team." Two queries, and one a member."""
    lost: dict = {}
    for group in Group.objects.filter(pk__in=[group.pk for group in groups]).prefetch_related("user_set"):
        for member in group.user_set.all():
            lost.setdefault(member, set()).add(group)
    for member, member_groups in lost.items():
        powers_change_record(actor=actor, holder=member, before=Powers(groups=frozenset(member_groups)), after=Powers())


def powers_change_record(*, actor, holder, before: Powers, after: Powers) -> LogEntry | None:
    """Records in the history of `holder` (an account, or a role), the admin's History (Django's
    LogEntry: who, whom, when), which roles, permissions and statuses `actor` gave and took; None
    when none changed."""
    parts = []
    for added, name in ((after.is_superuser, "superuser status"), (after.is_staff, "staff status")):
        was = before.is_superuser if name == "superuser status" else before.is_staff
        if added != was:
            parts.append(f"{'Gave' if added else 'Took'} {name}.")
    for verb, items, kind in (
        ("Gave", after.groups - before.groups, "role"),
        ("Took", before.groups - after.groups, "role"),
        ("Gave", after.permissions - before.permissions, "permission"),
        ("Took", before.permissions - after.permissions, "permission"),
    ):
        if items:
            parts.append(f"{verb} {kind}{'s' if len(items) > 1 else ''}: {_names(items)}.")
    if not parts:
        return None
    return LogEntry.objects.log_actions(
        user_id=actor.pk, queryset=[holder], action_flag=CHANGE, change_message=" ".join(parts), single_object=True
    )
