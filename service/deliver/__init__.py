"""Senders: hand rendered messages to a mail server or a maildir."""
