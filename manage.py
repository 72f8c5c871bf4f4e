#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    # In a checkout where `make run` ran: its DJANGO_DEBUG and database, unless the environment says otherwise.
    from tracker import checkout_env

    checkout_env.load()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
