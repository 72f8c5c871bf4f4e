from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.services import tokens_revoke_all


@receiver(post_save, sender=get_user_model())
def revoke_tokens_on_password_change_or_deactivation(sender, instance, created, **kwargs):
    """A new password or a deactivated account revokes the account's API tokens, as Django ends
    its other sessions: whoever held the old credential loses every way in.

    `_password` is how Django's own user model knows set_password() was called before this save
    (it then runs the password validators' password_changed); a hash upgraded at login is not a
    new password and leaves it unset."""
    if created:
        return
    if not instance.is_active or getattr(instance, "_password", None) is not None:
        tokens_revoke_all(user=instance)
