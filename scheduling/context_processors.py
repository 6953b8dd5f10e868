from scheduling import roles as role_checks


def roles(request):
    """Which navigation a template shows. Permissions are still checked by every view."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_is_pwp": role_checks.is_pwp(user),
        "user_is_admin_staff": role_checks.is_admin_staff(user),
        "user_is_manager": role_checks.is_manager(user),
    }
