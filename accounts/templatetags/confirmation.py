from django import template

from accounts.confirmation import changes_need_confirmation

register = template.Library()

# An admin page's forms (`opts` its model's) whose saves need a recent confirmation of who one is:
# sent_while_signed_in.js holds them while the confirmation has run out.
register.filter("changes_need_confirmation", changes_need_confirmation)
