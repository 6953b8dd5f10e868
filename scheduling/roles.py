"""The three staff roles, as Django groups with permissions, and helpers to ask about them."""

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied

PWP = "PWP"
ADMIN_STAFF = "Admin staff"
MANAGER = "Manager"

_VIEW_CORE = [
    "view_patient",
    "view_referral",
    "view_appointment",
    "view_contactattempt",
    "view_rearrangement",
    "view_auditentry",
]

ROLE_PERMISSIONS = {
    # PWPs work their own caseload (and those they cover); they read and write clinical notes. They book and
    # rearrange there too (caseload.selectors.can_book_for_referral), without book_appointments, which means
    # any caseload and cancelling (admin staff and managers only).
    PWP: _VIEW_CORE + ["log_contact", "view_clinicalnote", "add_clinicalnote", "view_admintask"],
    # Admin staff take referrals and book; they never read clinical notes.
    ADMIN_STAFF: _VIEW_CORE
    + [
        "add_patient",
        "change_patient",
        "add_referral",
        "change_referral",
        "book_appointments",
        "view_all_caseloads",
        "view_admintask",
        "change_admintask",
        "discharge_referral",
        "view_availabilityexception",
        "view_workinghours",
        # SMS: admin staff act on failures and replies, so they read the outbox and replies.
        "view_outboundmessage",
        "view_inboundmessage",
        "view_messageevent",
    ],
    # Managers see everything, run reports and change service settings, and do all admin staff do
    # (README's role table): take referrals and register patients too.
    MANAGER: _VIEW_CORE
    + [
        "add_patient",
        "change_patient",
        "add_referral",
        "change_referral",
        "view_all_caseloads",
        "view_clinicalnote",
        "view_reports",
        "manage_service_settings",
        "book_appointments",
        "log_contact",
        "view_admintask",
        "change_admintask",
        "discharge_referral",
        "view_servicesettings",
        "change_servicesettings",
        "view_team",
        "add_team",
        "change_team",
        "view_practitionerprofile",
        "change_practitionerprofile",
        "view_caseloadcover",
        "add_caseloadcover",
        "change_caseloadcover",
        "view_bookingsettings",
        "change_bookingsettings",
        "view_workinghours",
        "add_workinghours",
        "change_workinghours",
        "delete_workinghours",
        "view_availabilityexception",
        "add_availabilityexception",
        "change_availabilityexception",
        "view_contactpolicy",
        "change_contactpolicy",
        "view_optininvitation",
        "view_outboundmessage",
        "view_inboundmessage",
        "view_messageevent",
        "view_messagetemplate",
        "change_messagetemplate",
        "view_reminderrule",
        "add_reminderrule",
        "change_reminderrule",
        "view_smssettings",
        "change_smssettings",
        "view_worklistclaim",
    ],
}


def ensure_roles(**kwargs) -> None:
    """Create or update the role groups. Runs after every migrate (post_migrate)."""
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = Permission.objects.filter(content_type__app_label="scheduling", codename__in=codenames)
        group.permissions.add(*perms)


def extend_role(role: str, codenames: list[str]) -> None:
    """Lets a capability package add its own permissions to a role (called from AppConfig.ready)."""
    ROLE_PERMISSIONS[role] = ROLE_PERMISSIONS[role] + [c for c in codenames if c not in ROLE_PERMISSIONS[role]]


def has_role(user, role: str) -> bool:
    if not user.is_authenticated:
        return False
    cache = getattr(user, "_role_names", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._role_names = cache
    return role in cache


def is_pwp(user) -> bool:
    return has_role(user, PWP)


def is_admin_staff(user) -> bool:
    return has_role(user, ADMIN_STAFF)


def is_manager(user) -> bool:
    return has_role(user, MANAGER) or user.is_superuser


def require_perms(request, *perms: str) -> None:
    """Refuse (403) unless the signed-in user has every one of the app's permissions named."""
    if not all(request.user.has_perm(f"scheduling.{p}") for p in perms):
        raise PermissionDenied
